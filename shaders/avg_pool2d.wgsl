// 2-D average pooling: the mean of each window, padding counted as zeros (PyTorch's
// count_include_pad=True). Networks use one whole-image window per channel: global average
// pooling. One output element per invocation; c_out = c_in.

@group(0) @binding(1) var<storage, read> input: array<f32>;        // [N, C, H, W]
@group(0) @binding(2) var<storage, read_write> output: array<f32>; // [N, C, OH, OW]

@compute @workgroup_size(WORKGROUP_SIZE)
fn avg_pool2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let o = output_coord(gid, workgroups);
    if (!o.valid) {
        return;
    }
    let plane = (o.n * p.c_in + o.c) * p.in_h;
    var sum = 0.0;
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
            sum += input[(plane + u32(iy)) * p.in_w + u32(ix)];
        }
    }
    output[o.flat] = sum / f32(p.k_h * p.k_w);
}
