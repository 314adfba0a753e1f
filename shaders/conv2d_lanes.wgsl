// 2-D convolution on the lanes tile (conv_lanes.wgsl): a workgroup's strip is STRIP consecutive
// output pixels in flat (n, oy, ox) order, so a strip may run on into the next row or sample.

// Pixel j of the strip, or none past the last output pixel.
fn output_pixel(strip: Strip, j: u32) -> OutputPixel {
    let out_plane = p.out_h * p.out_w;
    let f = strip.first + j;
    let valid = f < p.batch * out_plane;
    let g = select(0u, f, valid);
    return OutputPixel(g / out_plane, g % out_plane, valid);
}

fn tap_source(strip: Strip, j: u32, ky: u32, kx: u32, group: u32) -> TapSource {
    let out = output_pixel(strip, j);
    let oy = out.pixel / p.out_w;
    let ox = out.pixel % p.out_w;
    let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    let inside = out.valid && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    let first_channel = out.n * p.c_in + group * (p.c_in / p.groups);
    let at = (first_channel * p.in_h + select(0u, u32(iy), inside)) * p.in_w + select(0u, u32(ix), inside);
    return TapSource(at, select(0.0, 1.0, inside));
}

// The taps some pixel of the strip reads inside the input (`pixels_read_tap`, common.wgsl).
fn tap_visited(strip: Strip, ky: u32, kx: u32) -> bool {
    return pixels_read_tap(strip.first, STRIP, ky, kx);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_lanes(invocation: Invocation) {
    let strip = Strip(strip_index(invocation) * STRIP, 0u, 0u);
    let l = lanes_of(invocation);
    store_sums(accumulate(strip, l), strip, l);
}
