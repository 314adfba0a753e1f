// conv_gemm.wgsl's workgroup tiles where sums are f16: row k of the A tile and row k of the B
// tile side by side, a row of both 512 bytes after the last in the 128 × 128 configuration. A
// vec4<f16> row of one tile is 256 bytes; tiles of their own put rows more than 2 KB apart, past
// the reach of AMD's reads of two rows in one instruction, and take a third more reads per step
// (BENCHMARKS.md). Side by side in f32 (rows of 1 KB), AMD's compiler took 160 registers in
// place of 128, a wave less per SIMD, so f32 keeps them apart.

var<workgroup> tiles: array<array<vec4<Acc>, (GEMM_BM + GEMM_BN) / 4u>, 2u * GEMM_BK>;

// Vec4 m of row k of half `parity` of the A tile.
fn tile_a(parity: u32, k: u32, m: u32) -> vec4<Acc> {
    return tiles[parity * GEMM_BK + k][m];
}

// Vec4 n of row k of half `parity` of the B tile.
fn tile_b(parity: u32, k: u32, n: u32) -> vec4<Acc> {
    return tiles[parity * GEMM_BK + k][GEMM_BM / 4u + n];
}

fn set_tile_a(parity: u32, round: u32, row: u32, m: u32, value: vec4<Acc>) {
    tiles[parity * GEMM_BK + round * A_ROWS + row][m] = value;
}

fn set_tile_b(parity: u32, round: u32, row: u32, pixel: u32, value: Acc) {
    tiles[parity * GEMM_BK + round * B_ROWS + row][GEMM_BM / 4u + pixel / 4u][pixel % 4u] = value;
}
