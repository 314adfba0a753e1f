// Direct 2-D transposed convolution, as a gather: one output element per invocation.
// Input pixel (iy, ix) reaches output (iy·s + ky·d − p, ...), so output (oy, ox) gathers from the
// taps where (oy + p − ky·d) is a non-negative multiple of s, and visits only those: no product
// with an inserted zero, no test of a tap of another phase.
// weight is [C_in, C_out/groups, kH, kW].

@group(0) @binding(2) var<storage, read> weight: array<Stored>; // [C_in, C_out/groups, kH, kW]

// The input row (or column) that tap k (of the right phase) reaches output position o from, or
// −1 outside the input.
fn source_index(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> i32 {
    let t = i32(o + pad) - i32(k * dil);
    if (t < 0 || u32(t) / stride >= size) {
        return -1;
    }
    return t / i32(stride);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv_transpose2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let o = output_coord(gid, workgroups);
    if (!o.valid) {
        return;
    }
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let group = o.c / cog;
    let co_local = o.c % cog;
    let rows = phase_taps(o.y, p.stride_h, p.pad_h, p.dil_h, p.k_h);
    let columns = phase_taps(o.x, p.stride_w, p.pad_w, p.dil_w, p.k_w);
    var acc = initial_value(o.c);
    for (var ky = rows.first; ky < p.k_h; ky += rows.period) {
        let iy = source_index(o.y, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h);
        if (iy < 0) {
            continue;
        }
        for (var kx = columns.first; kx < p.k_w; kx += columns.period) {
            let ix = source_index(o.x, kx, p.stride_w, p.pad_w, p.dil_w, p.in_w);
            if (ix < 0) {
                continue;
            }
            for (var ci_local = 0u; ci_local < cig; ci_local++) {
                let ci = group * cig + ci_local;
                let x = Acc(input[((o.n * p.c_in + ci) * p.in_h + u32(iy)) * p.in_w + u32(ix)]);
                let w = Acc(weight[((ci * cog + co_local) * p.k_h + ky) * p.k_w + kx]);
                acc += x * w;
            }
        }
    }
    store(o.flat, acc);
}
