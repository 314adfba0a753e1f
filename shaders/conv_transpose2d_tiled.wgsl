// 2-D transposed convolution by phase (sub-pixel) decomposition, on the register tile of
// conv2d_tiled (conv_tile.wgsl): each invocation computes four neighbouring pixels of one
// phase's grid for CO_TILE output channels.
//
// Output row oy receives input row iy through tap ky exactly when oy + p − ky·d = iy·s. Writing
// oy = my·s + ry, whether tap ky contributes depends only on the phase ry, so the outputs of one
// phase form an ordinary convolution over the taps of that phase: taps of other phases are
// skipped, never multiplied by an inserted zero, and results are interleaved on write. Within a
// phase, the grid's neighbours mx…mx+3 read the neighbouring input columns ix…ix+3 through
// each tap, so they share its weights. Each phase's quads are padded to whole workgroups: a
// workgroup's invocations share their phase, hence their taps (and the loops stay uniform).
// The transposed weight [C_in, C_out/groups, kH, kW] is repacked to the forward tile layout.
// `source_of` is in conv_transpose_phase.wgsl.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv_transpose2d_tiled(invocation: Invocation) {
    // Quads as (phase y, phase x, padded (n, my, quad)), quad fastest; every phase's grid is
    // that of the largest phase, whose excess quads compute nothing.
    let grid_h = (p.out_h + p.stride_h - 1u) / p.stride_h;
    let grid_w = (p.out_w + p.stride_w - 1u) / p.stride_w;
    let quads_per_row = (grid_w + PIXEL_TILE - 1u) / PIXEL_TILE;
    let quads = p.batch * grid_h * quads_per_row;
    let per_phase = (quads + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE * WORKGROUP_SIZE;
    let index = invocation.wid.z * invocation.workgroups.x * WORKGROUP_SIZE + invocation.gid.x;
    let phase = index / per_phase;
    let quad = index % per_phase;
    let live = phase < p.stride_h * p.stride_w && quad < quads;
    let rx = phase % p.stride_w;
    let ry = min(phase / p.stride_w, p.stride_h - 1u);
    let mx = vec4<u32>((quad % quads_per_row) * PIXEL_TILE) + vec4<u32>(0u, 1u, 2u, 3u);
    let my = (quad / quads_per_row) % grid_h;
    let n = min(quad / (quads_per_row * grid_h), p.batch - 1u);
    let oy = my * p.stride_h + ry;
    let ox = mx * p.stride_w + rx;
    let stored = vec4<bool>(live && oy < p.out_h) & mx < vec4<u32>(grid_w) & ox < vec4<u32>(p.out_w);
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let tiles = (cog + CO_TILE - 1u) / CO_TILE;
    let group = invocation.wid.y / tiles;
    let co_first = (invocation.wid.y % tiles) * CO_TILE;
    let row = tiles * CO_TILE / 4u;
    let plane = p.in_h * p.in_w;
    let in_group = (n * p.c_in + group * cig) * plane;

    // The workgroup's pixels (all of one phase, as per_phase is whole workgroups), to skip the
    // taps they all read outside the input (uniformly).
    let first_quad = (invocation.wid.z * invocation.workgroups.x + invocation.wid.x) * WORKGROUP_SIZE % per_phase;
    let workgroup_quads = quad_pixels(first_quad, WORKGROUP_SIZE, grid_h, grid_w, quads_per_row);
    let phase_xy = vec2<u32>(rx, ry);

    var tile: Tile;
    for (var ky = 0u; ky < p.k_h; ky++) {
        // Whether tap ky belongs to this phase is the same for the whole workgroup.
        if ((ry + p.pad_h) % p.stride_h != (ky * p.dil_h) % p.stride_h) {
            continue;
        }
        let sy = source_of(oy, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h);
        let in_row = in_group + select(0u, sy.index, sy.inside) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            if ((rx + p.pad_w) % p.stride_w != (kx * p.dil_w) % p.stride_w || !phase_rect_reads_tap(workgroup_quads, phase_xy, ky, kx)) {
                continue;
            }
            // The first pixel's column; the others follow it (a pixel outside the input reads
            // column 0 of its row, scaled to zero).
            let t = vec4<i32>(ox + p.pad_w) - i32(kx * p.dil_w);
            let ix = vec4<i32>(t.x / i32(p.stride_w)) + vec4<i32>(0, 1, 2, 3);
            let inside = t >= vec4<i32>(0) & ix < vec4<i32>(i32(p.in_w)) & stored & vec4<bool>(sy.inside);
            let at = vec4<u32>(in_row) + select(vec4<u32>(0u), vec4<u32>(ix), inside);
            let w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            let scale = select(vec4<Acc>(0.0), vec4<Acc>(1.0), inside);
            accumulate_tap(&tile, at, scale, w_at, cig, plane, row, invocation.lane);
        }
    }
    store_tile(tile, n, group, co_first, oy * p.out_w + ox.x, p.stride_w, stored);
}
