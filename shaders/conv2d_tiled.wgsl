// 2-D convolution as an implicit GEMM with a register tile: each invocation computes four
// neighbouring output pixels of one row for CO_TILE output channels of one group, so every
// weight vec4 it loads serves four pixels and every input value sixteen channels. Dilation only
// changes the address of a tap: its cost is that of any other tap.
// The register tile's weight layout and store live in conv_tile.wgsl.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_tiled(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
) {
    // x (and z, when x alone would pass the device limit) spread the quads; y the channel tiles.
    let quads_per_row = (p.out_w + 3u) / 4u;
    let quad = wid.z * workgroups.x * WORKGROUP_SIZE + gid.x;
    if (quad >= p.batch * p.out_h * quads_per_row) {
        return;
    }
    let ox0 = (quad % quads_per_row) * 4u;
    let oy = (quad / quads_per_row) % p.out_h;
    let n = quad / (quads_per_row * p.out_h);
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let tiles = (cog + CO_TILE - 1u) / CO_TILE;
    let group = wid.y / tiles;
    let co_first = (wid.y % tiles) * CO_TILE;
    let row = tiles * CO_TILE / 4u; // vec4s per (tap, input channel)
    let plane = p.in_h * p.in_w;
    let in_group = (n * p.c_in + group * cig) * plane;

    var a0: array<vec4<f32>, 4>;
    var a1: array<vec4<f32>, 4>;
    var a2: array<vec4<f32>, 4>;
    var a3: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        let in_row = in_group + u32(iy) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            // The four pixels' columns; one outside the input (or past the row's end) reads
            // column 0 and is scaled to zero.
            let ix = vec4<i32>(vec4<u32>(ox0, ox0 + 1u, ox0 + 2u, ox0 + 3u) * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
            let inside = ix >= vec4<i32>(0) & ix < vec4<i32>(i32(p.in_w)) & vec4<u32>(ox0, ox0 + 1u, ox0 + 2u, ox0 + 3u) < vec4<u32>(p.out_w);
            let scale = select(vec4<f32>(0.0), vec4<f32>(1.0), inside);
            let at = vec4<u32>(in_row) + select(vec4<u32>(0u), vec4<u32>(ix), inside);
            var w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            var offset = 0u;
            for (var ci = 0u; ci < cig; ci++) {
                let x = vec4<f32>(input[at.x + offset], input[at.y + offset], input[at.z + offset], input[at.w + offset]) * scale;
                let w0 = weight[w_at];
                let w1 = weight[w_at + 1u];
                let w2 = weight[w_at + 2u];
                let w3 = weight[w_at + 3u];
                a0[0] += x.x * w0; a0[1] += x.x * w1; a0[2] += x.x * w2; a0[3] += x.x * w3;
                a1[0] += x.y * w0; a1[1] += x.y * w1; a1[2] += x.y * w2; a1[3] += x.y * w3;
                a2[0] += x.z * w0; a2[1] += x.z * w1; a2[2] += x.z * w2; a2[3] += x.z * w3;
                a3[0] += x.w * w0; a3[1] += x.w * w1; a3[2] += x.w * w2; a3[3] += x.w * w3;
                offset += plane;
                w_at += row;
            }
        }
    }
    let first_pixel = oy * p.out_w + ox0;
    store_tile(a0, n, group, co_first, first_pixel);
    if (ox0 + 1u < p.out_w) { store_tile(a1, n, group, co_first, first_pixel + 1u); }
    if (ox0 + 2u < p.out_w) { store_tile(a2, n, group, co_first, first_pixel + 2u); }
    if (ox0 + 3u < p.out_w) { store_tile(a3, n, group, co_first, first_pixel + 3u); }
}
