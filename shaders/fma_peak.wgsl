// The device's attainable FP32 multiply-add rate (`atrous bench --peak`): ALU-bound, no memory
// traffic in the loop. Each invocation runs 8 vec4 multiply-add chains (a0 … a7), coupled in
// pairs (a0 with a4, …), so four pairs run independently; each trip of the loop advances every
// chain 4 steps, unrolled by hand, because SIMD compilers such as lavapipe's pay mask and counter
// bookkeeping per trip.
//
// Every step has the convolution kernels' shape, `sum = x * w + sum` with w uniform, so drivers
// compile it to the same instruction (v_mac_f32 on GCN, whose fused v_fma_f32 is slower on many
// chips and is what WGSL's `fma()` would ask for; v_fmac_f32 on RDNA). A pair turns by a small
// angle each step (a0 += r·a4, then a4 −= r·a0: a rotation, so the values stay bounded, with no
// overflow and no denormals); r comes from a uniform, so nothing is known at compile time. The
// sum of the chains is stored, so none of the work is dead.
//
// FLOPs per dispatch = 2 · 4 · chains · steps · invocations, with steps = 4 · trips
// (FMA_PEAK_CHAINS and FMA_PEAK_STEPS_PER_TRIP in src/gpu/shaders.rs).

struct PeakParams {
    trips: u32,
    rate: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> peak: PeakParams;
@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;

override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let index = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    let seed = f32(index & 1023u) * 1.0e-4;
    let r = vec4<f32>(peak.rate);
    let q = -r;
    var a0 = vec4<f32>(seed, seed + 0.01, seed + 0.02, seed + 0.03);
    var a1 = a0 + vec4<f32>(0.1);
    var a2 = a0 + vec4<f32>(0.2);
    var a3 = a0 + vec4<f32>(0.3);
    var a4 = a0 + vec4<f32>(0.4);
    var a5 = a0 + vec4<f32>(0.5);
    var a6 = a0 + vec4<f32>(0.6);
    var a7 = a0 + vec4<f32>(0.7);
    for (var trip = 0u; trip < peak.trips; trip++) {
        // Step 1 of 4.
        a0 = a4 * r + a0;
        a1 = a5 * r + a1;
        a2 = a6 * r + a2;
        a3 = a7 * r + a3;
        a4 = a0 * q + a4;
        a5 = a1 * q + a5;
        a6 = a2 * q + a6;
        a7 = a3 * q + a7;
        // Step 2 of 4.
        a0 = a4 * r + a0;
        a1 = a5 * r + a1;
        a2 = a6 * r + a2;
        a3 = a7 * r + a3;
        a4 = a0 * q + a4;
        a5 = a1 * q + a5;
        a6 = a2 * q + a6;
        a7 = a3 * q + a7;
        // Step 3 of 4.
        a0 = a4 * r + a0;
        a1 = a5 * r + a1;
        a2 = a6 * r + a2;
        a3 = a7 * r + a3;
        a4 = a0 * q + a4;
        a5 = a1 * q + a5;
        a6 = a2 * q + a6;
        a7 = a3 * q + a7;
        // Step 4 of 4.
        a0 = a4 * r + a0;
        a1 = a5 * r + a1;
        a2 = a6 * r + a2;
        a3 = a7 * r + a3;
        a4 = a0 * q + a4;
        a5 = a1 * q + a5;
        a6 = a2 * q + a6;
        a7 = a3 * q + a7;
    }
    if (index < arrayLength(&sink)) {
        sink[index] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    }
}
