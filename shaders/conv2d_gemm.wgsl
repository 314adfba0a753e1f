// 2-D convolution as an implicit GEMM staged in workgroup memory (conv_gemm.wgsl): N runs over
// the output pixels of the whole batch, n · OH · OW + oy · OW + ox.

fn pixel_origin(pixel: u32, phase: vec2<u32>) -> PixelOrigin {
    let out_plane = p.out_h * p.out_w;
    let n = pixel / out_plane;
    let oy = pixel % out_plane / p.out_w;
    let ox = pixel % p.out_w;
    let y = select(-2147483647, i32(oy * p.stride_h) - i32(p.pad_h), n < p.batch);
    return PixelOrigin(select(0u, n * p.c_in * p.in_h * p.in_w, n < p.batch), y, i32(ox * p.stride_w) - i32(p.pad_w));
}

// Every tap reaches every output pixel; tap (ky, kx) reads (ky · dil_h, kx · dil_w) from tap 0's
// position.
fn tap_walk(phase: vec2<u32>) -> TapWalk {
    return TapWalk(vec2<u32>(0u), vec2<u32>(1u), vec2<i32>(i32(p.dil_w), i32(p.dil_h)));
}

fn output_pixel(pixel: u32, phase: vec2<u32>) -> OutputPixel {
    let out_plane = p.out_h * p.out_w;
    let n = pixel / out_plane;
    return OutputPixel(n * p.c_out * out_plane + pixel % out_plane, n < p.batch);
}

// The taps some pixel of the workgroup's tile reads inside the input (common.wgsl).
fn tile_reads_tap(ky: u32, kx: u32) -> bool {
    return pixels_read_tap(tile.n_first, GEMM_BN, ky, kx);
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_gemm(@builtin(local_invocation_index) invocation: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    // x (and z, when x alone would pass the device limit) spread the pixel tiles, y the channel
    // tiles of every group. Workgroups past the last pixel tile have nothing to do.
    let n_tile = wid.z * workgroups.x + wid.x;
    if (n_tile * GEMM_BN >= p.batch * p.out_h * p.out_w) {
        return;
    }
    let m_tiles = (p.c_out / p.groups + GEMM_BM - 1u) / GEMM_BM;
    conv_gemm(invocation, GemmTile(n_tile * GEMM_BN, (wid.y % m_tiles) * GEMM_BM, wid.y / m_tiles, vec2<u32>(0u)));
}
