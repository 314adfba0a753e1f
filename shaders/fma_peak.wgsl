// The device's attainable FP32 FMA rate (`atrous bench --peak`): ALU-bound, no memory traffic
// in the loop. Each invocation runs 8 independent vec4 fused multiply-add chains (a0 … a7), so
// no chain waits on another; each trip of the loop advances every chain 4 steps, unrolled by
// hand, because SIMD compilers such as lavapipe's pay mask and counter bookkeeping per trip.
// The multiplier and addend come from a uniform (nothing is known at compile time) and keep
// every value near 1 (a = a·m + c with m < 1 converges to c / (1 − m)): no overflow, no
// denormals. The sum of the chains is stored, so none of the work is dead.
//
// FLOPs per dispatch = 2 · 4 · chains · steps · invocations, with steps = 4 · trips
// (FMA_PEAK_CHAINS and FMA_PEAK_STEPS_PER_TRIP in src/gpu/shaders.rs).

struct PeakParams {
    trips: u32,
    multiplier: f32,
    addend: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> peak: PeakParams;
@group(0) @binding(1) var<storage, read_write> sink: array<vec4<f32>>;

override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let index = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    let seed = f32(index & 1023u) * 1.0e-4;
    let m = vec4<f32>(peak.multiplier);
    let c = vec4<f32>(peak.addend);
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
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
        // Step 2 of 4.
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
        // Step 3 of 4.
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
        // Step 4 of 4.
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    if (index < arrayLength(&sink)) {
        sink[index] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    }
}
