// 2-D transposed convolution as an implicit GEMM staged in workgroup memory (conv_gemm.wgsl),
// phase by phase as conv_transpose2d_tiled.wgsl explains: a workgroup's pixels share one phase
// (ry, rx), so they share its taps, and taps of other phases are skipped, never multiplied by an
// inserted zero. N runs over the pixels of the phase's grid, n · GH · GW + my · GW + mx, each
// phase's grid being that of the largest phase (GH = ⌈OH / s⌉), whose excess pixels store
// nothing; output pixel (my · s + ry, mx · s + rx). `phase` is (rx, ry).

struct PhasePixel { n: u32, oy: u32, ox: u32, live: bool }

fn phase_pixel(pixel: u32, phase: vec2<u32>) -> PhasePixel {
    let grid_h = (p.out_h + p.stride_h - 1u) / p.stride_h;
    let grid_w = (p.out_w + p.stride_w - 1u) / p.stride_w;
    let n = pixel / (grid_h * grid_w);
    let rest = pixel % (grid_h * grid_w);
    let oy = rest / grid_w * p.stride_h + phase.y;
    let ox = rest % grid_w * p.stride_w + phase.x;
    return PhasePixel(n, oy, ox, n < p.batch && oy < p.out_h && ox < p.out_w);
}

// The taps of phase (ry, rx) (`phase_taps` is in conv_transpose_phase.wgsl). Output oy receives
// input (oy + pad − ky·dil) / stride through tap ky: exact for the phase's taps, and each step
// of `period` taps moves the input row up by period · dil / stride.
fn tap_walk(phase: vec2<u32>) -> TapWalk {
    let rows = phase_taps(phase.y, p.stride_h, p.pad_h, p.dil_h, p.k_h);
    let columns = phase_taps(phase.x, p.stride_w, p.pad_w, p.dil_w, p.k_w);
    let shift = vec2<i32>(-i32(columns.period * p.dil_w / p.stride_w), -i32(rows.period * p.dil_h / p.stride_h));
    return TapWalk(vec2<u32>(columns.first, rows.first), vec2<u32>(columns.period, rows.period), shift);
}

// The input position of the phase's first tap (far outside the input for a pixel that does
// not exist).
fn pixel_origin(pixel: u32, phase: vec2<u32>) -> PixelOrigin {
    let o = phase_pixel(pixel, phase);
    let first = tap_walk(phase).first;
    let y = (i32(o.oy + p.pad_h) - i32(first.y * p.dil_h)) / i32(p.stride_h);
    let x = (i32(o.ox + p.pad_w) - i32(first.x * p.dil_w)) / i32(p.stride_w);
    return PixelOrigin(select(0u, o.n * p.c_in * p.in_h * p.in_w, o.live), select(-2147483647, y, o.live), x);
}

fn output_pixel(pixel: u32, phase: vec2<u32>) -> OutputPixel {
    let o = phase_pixel(pixel, phase);
    return OutputPixel(o.n * p.c_out * p.out_h * p.out_w + o.oy * p.out_w + o.ox, o.live);
}

// The rows and columns of the phase grid that the workgroup's tile covers, found once.
var<private> tile_pixels: PixelRect;

// The taps of the phase (the walk visits no others) some pixel of the workgroup's tile reads
// inside the input (common.wgsl).
fn tile_reads_tap(ky: u32, kx: u32) -> bool {
    return phase_rect_reads_tap(tile_pixels, tile.phase, ky, kx);
}

@compute @workgroup_size(GEMM_THREADS)
fn conv_transpose2d_gemm(@builtin(local_invocation_index) invocation: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    // x (and z) spread the pixel tiles of every phase, phase by phase; y the channel tiles of
    // every group. Workgroups past the last phase have nothing to do.
    let grid = p.batch * ((p.out_h + p.stride_h - 1u) / p.stride_h) * ((p.out_w + p.stride_w - 1u) / p.stride_w);
    let tiles_per_phase = (grid + GEMM_BN - 1u) / GEMM_BN;
    let index = wid.z * workgroups.x + wid.x;
    let phase = index / tiles_per_phase;
    if (phase >= p.stride_h * p.stride_w) {
        return;
    }
    let m_tiles = (p.c_out / p.groups + GEMM_BM - 1u) / GEMM_BM;
    tile_pixels = pixel_rect((index % tiles_per_phase) * GEMM_BN, GEMM_BN, (p.out_h + p.stride_h - 1u) / p.stride_h, (p.out_w + p.stride_w - 1u) / p.stride_w);
    let workgroup_tile = GemmTile((index % tiles_per_phase) * GEMM_BN, (wid.y % m_tiles) * GEMM_BM, wid.y / m_tiles, vec2<u32>(phase % p.stride_w, phase / p.stride_w));
    conv_gemm(invocation, workgroup_tile);
}
