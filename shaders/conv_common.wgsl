// Shared by every convolution kernel (prepended to each kernel file at load time).
// Mirrors `ConvUniform` in src/gpu/conv.rs field for field.
struct ConvParams {
    batch: u32, c_in: u32, in_h: u32, in_w: u32,
    c_out: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    has_bias: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;   // [N, C_in, H, W]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // [C_out], or one unused zero
@group(0) @binding(4) var<storage, read_write> output: array<f32>; // [N, C_out, OH, OW]

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

fn initial_value(c: u32) -> f32 {
    if (p.has_bias != 0u) {
        return bias[c];
    }
    return 0.0;
}
