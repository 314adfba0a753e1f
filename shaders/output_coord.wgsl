// For the kernels that compute one output element per invocation (the direct convolutions and
// pooling), after common.wgsl.

// Invocations per workgroup: the size the host dispatches with (`Shader::workgroup_size`).
override WORKGROUP_SIZE: u32 = 64u;

// The output element an invocation computes. The host spreads workgroups over x and y when
// one dimension would exceed the device's limit, so the flat index folds y back in.
struct OutputCoord { n: u32, c: u32, y: u32, x: u32, flat: u32, valid: bool }

fn output_coord(gid: vec3<u32>, workgroups: vec3<u32>) -> OutputCoord {
    let flat = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    let valid = flat < p.batch * p.c_out * p.out_h * p.out_w;
    let x = flat % p.out_w;
    var rest = flat / p.out_w;
    let y = rest % p.out_h;
    rest = rest / p.out_h;
    return OutputCoord(rest / p.c_out, rest % p.c_out, y, x, flat, valid);
}
