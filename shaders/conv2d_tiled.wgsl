// 2-D convolution as an implicit GEMM with a register tile: each invocation computes one output
// pixel for CO_TILE output channels of one group. Across a workgroup the pixels are consecutive,
// so input reads are contiguous and the weights (the same for every invocation) are broadcast.
// Dilation only changes the address of a tap: its cost is that of any other tap.
//
// The weight is repacked by the host to [groups, kH, kW, C_in/groups, C_out/groups padded to
// CO_TILE] so that the CO_TILE weights of one (tap, input channel) are four vec4s in a row.

const CO_TILE: u32 = 16u;

@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;

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
            var x_at = in_group + u32(iy) * p.in_w + u32(ix);
            var w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            for (var ci = 0u; ci < cig; ci++) {
                let x = input[x_at];
                acc[0] += x * weight[w_at];
                acc[1] += x * weight[w_at + 1u];
                acc[2] += x * weight[w_at + 2u];
                acc[3] += x * weight[w_at + 3u];
                x_at += plane;
                w_at += row;
            }
        }
    }
    let out_plane = p.out_h * p.out_w;
    let out_pixel = oy * p.out_w + ox;
    for (var j = 0u; j < CO_TILE; j++) {
        let co_local = co_first + j;
        if (co_local >= cog) {
            break;
        }
        let co = group * cog + co_local;
        store((n * p.c_out + co) * out_plane + out_pixel, acc[j / 4u][j % 4u] + initial_value(co));
    }
}
