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

// Whether some pixel of the strip reads tap (ky, kx) inside the input: a tap that every pixel
// reads in the padding would only add zeros, which is most of the work of a large dilation on a
// small map (DeepLabv3's ASPP). The answer depends on the strip and the uniforms alone, so it is
// the same for the whole workgroup. Conservative: the strip's rows (and, within one row, its
// columns) are taken as intervals, all columns where it spans rows, all rows where it spans
// samples.
fn tap_visited(strip: Strip, ky: u32, kx: u32) -> bool {
    if (p.skip_padding_taps == 0u) {
        return true;
    }
    let out_plane = p.out_h * p.out_w;
    let last_pixel = min(strip.first + STRIP, p.batch * out_plane) - 1u;
    let one_sample = strip.first / out_plane == last_pixel / out_plane;
    let first = select(0u, strip.first % out_plane, one_sample);
    let last = select(out_plane - 1u, last_pixel % out_plane, one_sample);
    let one_row = first / p.out_w == last / p.out_w;
    let ox_first = select(0u, first % p.out_w, one_row);
    let ox_last = select(p.out_w - 1u, last % p.out_w, one_row);
    let iy_first = i32((first / p.out_w) * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let iy_last = i32((last / p.out_w) * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let ix_first = i32(ox_first * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    let ix_last = i32(ox_last * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    return iy_last >= 0 && iy_first < i32(p.in_h) && ix_last >= 0 && ix_first < i32(p.in_w);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_lanes(invocation: Invocation) {
    let strip = Strip(strip_index(invocation) * STRIP, 0u, 0u);
    let l = lanes_of(invocation);
    store_sums(accumulate(strip, l), strip, l);
}
