// 2-D transposed convolution by phase (sub-pixel) decomposition, on the register tile of
// conv2d_tiled: each invocation computes one output pixel for CO_TILE output channels.
//
// Output row oy receives input row iy through tap ky exactly when oy + p − ky·d = iy·s. Writing
// oy = my·s + ry, whether tap ky contributes depends only on the phase ry, so the outputs of one
// phase form an ordinary convolution over the taps of that phase. Invocations are ordered phase
// first, so a workgroup's invocations share their phase and their taps: taps of other phases are
// skipped, never multiplied by an inserted zero; results are interleaved on write.
// The register tile, its weight layout and its store live in conv_tile.wgsl (the transposed
// weight [C_in, C_out/groups, kH, kW] is repacked to the same layout as the forward one).

// The input index that tap k reaches output o from (if `inside`): (o + pad − k·dil) / stride.
struct Source { index: u32, inside: bool }

fn source_of(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> Source {
    let t = i32(o + pad) - i32(k * dil);
    let i = t / i32(stride);
    return Source(u32(max(i, 0)), t >= 0 && i < i32(size));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv_transpose2d_tiled(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
) {
    // Pixels as (phase y, phase x, n, my, mx), mx fastest; every phase padded to the largest
    // phase's grid, whose excess invocations compute nothing.
    let grid_h = (p.out_h + p.stride_h - 1u) / p.stride_h;
    let grid_w = (p.out_w + p.stride_w - 1u) / p.stride_w;
    let index = wid.z * workgroups.x * WORKGROUP_SIZE + gid.x;
    let mx = index % grid_w;
    var rest = index / grid_w;
    let my = rest % grid_h;
    rest = rest / grid_h;
    let n = rest % p.batch;
    rest = rest / p.batch;
    let rx = rest % p.stride_w;
    let ry = rest / p.stride_w;
    let oy = my * p.stride_h + ry;
    let ox = mx * p.stride_w + rx;
    if (ry >= p.stride_h || oy >= p.out_h || ox >= p.out_w) {
        return;
    }
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let tiles = (cog + CO_TILE - 1u) / CO_TILE;
    let group = wid.y / tiles;
    let co_first = (wid.y % tiles) * CO_TILE;
    let row = tiles * CO_TILE / 4u;
    let plane = p.in_h * p.in_w;
    let in_group = (n * p.c_in + group * cig) * plane;

    var acc: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < p.k_h; ky++) {
        // Whether tap ky belongs to this phase is the same for the whole workgroup.
        if ((ry + p.pad_h) % p.stride_h != (ky * p.dil_h) % p.stride_h) {
            continue;
        }
        let sy = source_of(oy, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h);
        for (var kx = 0u; kx < p.k_w; kx++) {
            if ((rx + p.pad_w) % p.stride_w != (kx * p.dil_w) % p.stride_w) {
                continue;
            }
            let sx = source_of(ox, kx, p.stride_w, p.pad_w, p.dil_w, p.in_w);
            if (!(sy.inside && sx.inside)) {
                continue;
            }
            let w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_first / 4u;
            accumulate_tap(&acc, in_group + sy.index * p.in_w + sx.index, w_at, cig, plane, row);
        }
    }
    store_tile(acc, n, group, co_first, oy * p.out_w + ox);
}
