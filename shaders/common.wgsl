// Shared by every sliding-window kernel (prepended to each kernel file at load time).
// Mirrors `WindowUniform` in src/gpu/window.rs field for field.
struct Window {
    batch: u32, c_in: u32, in_h: u32, in_w: u32,
    c_out: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    has_bias: u32, has_residual: u32, relu: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Window;

// Invocations per workgroup; a pipeline may override it.
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
