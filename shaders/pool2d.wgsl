// 2-D pooling, one output element per invocation (c_out = c_in): max pooling (PyTorch's
// max_pool2d, ceil_mode=False: padding never wins, as if it were −∞) and average pooling (the
// mean of the window, padding counted as zeros: count_include_pad=True; networks use it with one
// whole-image window, global average pooling). One walk over the window serves both, in f32 in
// every precision: a global average over thousands of values would lose too much in f16.

@group(0) @binding(1) var<storage, read> input: array<Stored>;     // [N, C, H, W]
@group(0) @binding(2) var<storage, read_write> output: array<Stored>;// [N, C, OH, OW]

// The max (`average` false) or the sum (`average` true) of the window's taps inside the input.
fn pool_window(o: OutputCoord, average: bool) -> f32 {
    let plane = (o.n * p.c_in + o.c) * p.in_h;
    var acc = select(-3.402823e38, 0.0, average);
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(o.y * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(o.x * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let v = f32(input[(plane + u32(iy)) * p.in_w + u32(ix)]);
            acc = select(max(acc, v), acc + v, average);
        }
    }
    return acc;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn max_pool2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let o = output_coord(gid, workgroups);
    if (o.valid) {
        output[o.flat] = Stored(pool_window(o, false));
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avg_pool2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let o = output_coord(gid, workgroups);
    if (o.valid) {
        output[o.flat] = Stored(pool_window(o, true) / f32(p.k_h * p.k_w));
    }
}
