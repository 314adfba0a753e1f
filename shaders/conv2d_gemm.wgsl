// 2-D convolution as an implicit GEMM staged in workgroup memory (conv_gemm.wgsl): N runs over
// the output pixels of the workgroup's column segment (`Segment`, common.wgsl), a tile never
// reaching into another segment.

var<private> segment: Segment;

fn pixel_origin(pixel: u32, phase: vec2<u32>) -> PixelOrigin {
    let q = segment_pixel(segment, pixel);
    let y = select(-2147483647, i32(q.oy * p.stride_h) - i32(p.pad_h), q.valid);
    return PixelOrigin(select(0u, q.n * p.c_in * p.in_h * p.in_w, q.valid), y, i32(q.ox * p.stride_w) - i32(p.pad_w));
}

// Every tap reaches every output pixel; tap (ky, kx) reads (ky · dil_h, kx · dil_w) from tap 0's
// position.
fn tap_walk(phase: vec2<u32>) -> TapWalk {
    return TapWalk(vec2<u32>(0u), vec2<u32>(1u), vec2<i32>(i32(p.dil_w), i32(p.dil_h)));
}

fn output_pixel(pixel: u32, phase: vec2<u32>) -> OutputPixel {
    let q = segment_pixel(segment, pixel);
    return OutputPixel((q.n * p.c_out * p.out_h + q.oy) * p.out_w + q.ox, q.valid);
}

// The rows and columns of the output that the workgroup's tile covers, found once.
var<private> tile_pixels: PixelRect;

// The taps some pixel of the workgroup's tile reads inside the input (common.wgsl).
fn tile_reads_tap(ky: u32, kx: u32) -> bool {
    return rect_reads_tap(tile_pixels, ky, kx);
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_gemm(@builtin(local_invocation_index) invocation: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    // x (and z, when x alone would pass the device limit) spread the pixel tiles, segment by
    // segment, y the channel tiles of every group. Workgroups past the last pixel tile have
    // nothing to do.
    let index = wid.z * workgroups.x + wid.x;
    segment = segment_of(index, GEMM_BN);
    let n_first = (index - segment.first_workgroup) * GEMM_BN;
    if (n_first >= p.batch * p.out_h * segment.columns) {
        return;
    }
    tile_pixels = segment_rect(segment, n_first, GEMM_BN);
    let m_tiles = (p.c_out / p.groups + GEMM_BM - 1u) / GEMM_BM;
    conv_gemm(invocation, GemmTile(n_first, (wid.y % m_tiles) * GEMM_BM, wid.y / m_tiles, vec2<u32>(0u)));
}
