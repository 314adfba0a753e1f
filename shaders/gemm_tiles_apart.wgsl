// conv_gemm.wgsl's workgroup tiles where sums are f32: the A and B tiles apart, each row of a
// tile (k) 512 bytes after the last in the 128 × 128 configuration. Tile rows are stored in
// rounds, as they are loaded (rows round · A_ROWS + row), so that the outer index is a constant
// wherever the K loop uses it and the compiler folds its bounds checks.

var<workgroup> a_tiles: array<array<array<vec4<Acc>, GEMM_BM / 4u>, A_ROWS>, 2u * A_LOADS>;
var<workgroup> b_tiles: array<array<array<vec4<Acc>, GEMM_BN / 4u>, B_ROWS>, 2u * GEMM_BK / B_ROWS>;

// Vec4 m of row k of half `parity` of the A tile.
fn tile_a(parity: u32, k: u32, m: u32) -> vec4<Acc> {
    return a_tiles[parity * A_LOADS + k / A_ROWS][k % A_ROWS][m];
}

// Vec4 n of row k of half `parity` of the B tile.
fn tile_b(parity: u32, k: u32, n: u32) -> vec4<Acc> {
    return b_tiles[parity * (GEMM_BK / B_ROWS) + k / B_ROWS][k % B_ROWS][n];
}

fn set_tile_a(parity: u32, round: u32, row: u32, m: u32, value: vec4<Acc>) {
    a_tiles[parity * A_LOADS + round][row][m] = value;
}

fn set_tile_b(parity: u32, round: u32, row: u32, pixel: u32, value: Acc) {
    b_tiles[parity * (GEMM_BK / B_ROWS) + round][row][pixel / 4u][pixel % 4u] = value;
}
