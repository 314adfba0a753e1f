// 2-D transposed convolution by phase, as conv_transpose2d_tiled.wgsl explains (`source_of` is
// in conv_transpose_phase.wgsl), on the lanes tile (conv_lanes.wgsl): a workgroup's strip is STRIP
// consecutive pixels of one phase's grid, in flat (n, my, mx) order. Every phase gets the grid of
// the largest phase, whose excess pixels compute nothing.

fn phase_grid() -> vec2<u32> {
    return vec2<u32>((p.out_h + p.stride_h - 1u) / p.stride_h, (p.out_w + p.stride_w - 1u) / p.stride_w);
}

// Grid pixel (my, mx) of sample n, and its output pixel (oy, ox) in phase (ry, rx).
struct PhasePixel { n: u32, oy: u32, ox: u32, valid: bool }

fn phase_pixel(strip: Strip, j: u32) -> PhasePixel {
    let grid = phase_grid();
    let f = strip.first + j;
    let live = f < p.batch * grid.x * grid.y;
    let g = select(0u, f, live);
    let oy = (g / grid.y) % grid.x * p.stride_h + strip.ry;
    let ox = g % grid.y * p.stride_w + strip.rx;
    return PhasePixel(g / (grid.x * grid.y), oy, ox, live && oy < p.out_h && ox < p.out_w);
}

fn output_pixel(strip: Strip, j: u32) -> OutputPixel {
    let q = phase_pixel(strip, j);
    return OutputPixel(q.n, q.oy * p.out_w + q.ox, q.valid);
}

// The caller visits only the taps of the strip's phase, so the divisions in `source_of` are exact.
fn tap_source(strip: Strip, j: u32, ky: u32, kx: u32, group: u32) -> TapSource {
    let q = phase_pixel(strip, j);
    let sy = source_of(q.oy, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h);
    let sx = source_of(q.ox, kx, p.stride_w, p.pad_w, p.dil_w, p.in_w);
    let inside = q.valid && sy.inside && sx.inside;
    let first_channel = q.n * p.c_in + group * (p.c_in / p.groups);
    let at = (first_channel * p.in_h + select(0u, sy.index, inside)) * p.in_w + select(0u, sx.index, inside);
    return TapSource(at, select(0.0, 1.0, inside));
}

// The taps of the strip's phase that some pixel of the strip reads inside the input
// (`phase_pixels_read_tap`, common.wgsl).
fn tap_visited(strip: Strip, ky: u32, kx: u32) -> bool {
    return (strip.ry + p.pad_h) % p.stride_h == (ky * p.dil_h) % p.stride_h
        && (strip.rx + p.pad_w) % p.stride_w == (kx * p.dil_w) % p.stride_w
        && phase_pixels_read_tap(strip.first, STRIP, phase_grid().yx, vec2<u32>(strip.rx, strip.ry), ky, kx);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv_transpose2d_lanes(invocation: Invocation) {
    // Workgroups as (phase y, phase x, strip), strip fastest.
    let grid = phase_grid();
    let strips = (p.batch * grid.x * grid.y + STRIP - 1u) / STRIP;
    let index = strip_index(invocation);
    let phase = index / strips;
    // A workgroup past the last phase (the grid is spread over x and z in whole rows) starts
    // past the last pixel: it computes nothing.
    let first = select(p.batch * grid.x * grid.y, index % strips * STRIP, phase < p.stride_h * p.stride_w);
    let strip = Strip(first, min(phase / p.stride_w, p.stride_h - 1u), phase % p.stride_w);
    let l = lanes_of(invocation);
    store_sums(accumulate(strip, l), strip, l);
}
