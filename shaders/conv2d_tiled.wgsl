// 2-D convolution as an implicit GEMM with a register tile: each invocation computes four
// neighbouring output pixels of one row for CO_TILE output channels of one group (the tile, its
// weight layout and its store live in conv_tile.wgsl). Dilation only changes the address of a
// tap: its cost is that of any other tap.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_tiled(invocation: Invocation) {
    // x (and z, when x alone would pass the device limit) spread the quads of pixels; y the
    // channel tiles. Invocations past the last quad compute quad 0 and store nothing.
    let quads_per_row = (p.out_w + PIXEL_TILE - 1u) / PIXEL_TILE;
    let index = invocation.wid.z * invocation.workgroups.x * WORKGROUP_SIZE + invocation.gid.x;
    let live = index < p.batch * p.out_h * quads_per_row;
    let quad = select(0u, index, live);
    let ox = vec4<u32>((quad % quads_per_row) * PIXEL_TILE) + vec4<u32>(0u, 1u, 2u, 3u);
    let oy = (quad / quads_per_row) % p.out_h;
    let n = quad / (quads_per_row * p.out_h);
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let tiles = (cog + CO_TILE - 1u) / CO_TILE;
    let group = invocation.wid.y / tiles;
    let co_first = (invocation.wid.y % tiles) * CO_TILE;
    let row = tiles * CO_TILE / 4u; // vec4s per (tap, input channel)
    let plane = p.in_h * p.in_w;
    let in_group = (n * p.c_in + group * cig) * plane;

    // The workgroup's pixels, to skip the taps they all read in the padding (uniformly).
    let workgroup_quads = quad_pixels((invocation.wid.z * invocation.workgroups.x + invocation.wid.x) * WORKGROUP_SIZE, WORKGROUP_SIZE, p.out_h, p.out_w, quads_per_row);

    var tile: Tile;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
        let row_inside = iy >= 0 && iy < i32(p.in_h);
        let in_row = in_group + select(0u, u32(iy), row_inside) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            if (!rect_reads_tap(workgroup_quads, ky, kx)) {
                continue;
            }
            // A pixel outside the input (or past the row's end) reads column 0, scaled to zero.
            let ix = vec4<i32>(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
            let inside = ix >= vec4<i32>(0) & ix < vec4<i32>(i32(p.in_w)) & ox < vec4<u32>(p.out_w) & vec4<bool>(row_inside);
            let at = vec4<u32>(in_row) + select(vec4<u32>(0u), vec4<u32>(ix), inside);
            let w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            let scale = select(vec4<Acc>(0.0), vec4<Acc>(1.0), inside);
            accumulate_tap(&tile, at, scale, w_at, cig, plane, row, invocation.lane);
        }
    }
    let stored = vec4<bool>(live) & ox < vec4<u32>(p.out_w);
    let step = 1u;
    store_tile(tile, n, group, co_first, oy * p.out_w + ox.x, step, stored);
}
