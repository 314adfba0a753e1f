// 2-D convolution on the lanes tile (conv_lanes.wgsl): a workgroup's strip is STRIP consecutive
// pixels of one column segment (`Segment`, common.wgsl), so it may run on into the next row or
// sample but never into another segment.

var<private> segment: Segment;

// Pixel j of the strip, or none past the segment's last pixel.
fn output_pixel(strip: Strip, j: u32) -> OutputPixel {
    let q = segment_pixel(segment, strip.first + j);
    return OutputPixel(q.n, q.oy * p.out_w + q.ox, q.valid);
}

fn tap_source(strip: Strip, j: u32, ky: u32, kx: u32, group: u32) -> TapSource {
    let q = segment_pixel(segment, strip.first + j);
    let iy = i32(q.oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let ix = i32(q.ox * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    let inside = q.valid && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    let first_channel = q.n * p.c_in + group * (p.c_in / p.groups);
    let at = (first_channel * p.in_h + select(0u, u32(iy), inside)) * p.in_w + select(0u, u32(ix), inside);
    return TapSource(at, select(0.0, 1.0, inside));
}

// The taps some pixel of the strip reads inside the input.
fn tap_visited(strip: Strip, ky: u32, kx: u32) -> bool {
    return rect_reads_tap(segment_rect(segment, strip.first, STRIP), ky, kx);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_lanes(invocation: Invocation) {
    let index = strip_index(invocation);
    segment = segment_of(index, STRIP);
    let strip = Strip((index - segment.first_workgroup) * STRIP, 0u, 0u);
    let l = lanes_of(invocation);
    store_sums(accumulate(strip, l), strip, l);
}
