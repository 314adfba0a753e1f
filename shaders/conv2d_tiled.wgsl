// 2-D convolution as an implicit GEMM with a register tile: each invocation computes one output
// pixel for CO_TILE output channels of one group. Across a workgroup the pixels are consecutive,
// so input reads are contiguous and the weights (the same for every invocation) are broadcast.
// Dilation only changes the address of a tap: its cost is that of any other tap.
// The register tile, its weight layout and its store live in conv_tile.wgsl.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_tiled(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
) {
    // x (and z, when x alone would pass the device limit) spread the pixels; y the channel tiles.
    let pixel = wid.z * workgroups.x * WORKGROUP_SIZE + gid.x;
    if (pixel >= p.batch * p.out_h * p.out_w) {
        return;
    }
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let n = pixel / (p.out_w * p.out_h);
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let tiles = (cog + CO_TILE - 1u) / CO_TILE;
    let group = wid.y / tiles;
    let co_first = (wid.y % tiles) * CO_TILE;
    let row = tiles * CO_TILE / 4u; // vec4s per (tap, input channel)
    let plane = p.in_h * p.in_w;
    let in_group = (n * p.c_in + group * cig) * plane;

    var acc: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            accumulate_tap(&acc, in_group + u32(iy) * p.in_w + u32(ix), w_at, cig, plane, row);
        }
    }
    store_tile(acc, n, group, co_first, oy * p.out_w + ox);
}
