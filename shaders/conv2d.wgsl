// Direct 2-D convolution: one output element per invocation.
// out[n, co, oy, ox] = bias[co] + Σ input[n, ci, oy·s + ky·d − p, ox·s + kx·d − p] · weight[co, ci_local, ky, kx]
// over the input channels of co's group. Dilation only changes the address of a tap.

@group(0) @binding(2) var<storage, read> weight: array<Stored>; // [C_out, C_in/groups, kH, kW]

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let o = output_coord(gid, workgroups);
    if (!o.valid) {
        return;
    }
    let cig = p.c_in / p.groups;
    let group = o.c / (p.c_out / p.groups);
    var acc = initial_value(o.c);
    for (var ci_local = 0u; ci_local < cig; ci_local++) {
        let in_plane = (o.n * p.c_in + group * cig + ci_local) * p.in_h;
        let w_plane = (o.c * cig + ci_local) * p.k_h;
        for (var ky = 0u; ky < p.k_h; ky++) {
            // Signed: a tap may fall into the padding above or left of the input.
            let iy = i32(o.y * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
            if (iy < 0 || iy >= i32(p.in_h)) {
                continue;
            }
            let in_row = (in_plane + u32(iy)) * p.in_w;
            let w_row = (w_plane + ky) * p.k_w;
            for (var kx = 0u; kx < p.k_w; kx++) {
                let ix = i32(o.x * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
                if (ix < 0 || ix >= i32(p.in_w)) {
                    continue;
                }
                acc += Acc(input[in_row + u32(ix)]) * Acc(weight[w_row + kx]);
            }
        }
    }
    store(o.flat, acc);
}
