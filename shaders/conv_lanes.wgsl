// The register tile shared by the lanes kernels (conv2d_lanes.wgsl, conv_transpose2d_lanes.wgsl),
// for devices with subgroups of at least 8: output channels across lanes, pixels in registers.
// Each invocation of a workgroup owns LANE_CHANNELS consecutive output channels (invocation i:
// channels 4i … 4i + 3 of the workgroup's block), and the whole workgroup computes one strip of
// STRIP pixels; each kernel says which (`tap_source`, `output_pixel` and `tap_visited`, defined
// in its file).
// Each invocation keeps its 4 channels × 32 pixels of sums in registers: 32 vec4s with constant
// names (a matrix-typed version, `m += outer(w, x)`, ran 12% slower on lavapipe).
//
// Per (tap, input channel) every lane loads one vec4 of weights of its own (consecutive lanes
// read consecutive addresses) and four input values, those of pixels k, k + 8, k + 16 and k + 24
// for lane k of its subgroup; `subgroupBroadcast` hands every lane all 32 inputs. All lanes of a
// subgroup share the strip, so each input value is loaded once per subgroup instead of once per
// lane. lavapipe loads storage buffers lane by lane, so what counts is sums per value loaded:
// per lane, 1 channel × 16 pixels took 2048 ms on the benchmark, 2 × 16 1081, 4 × 16 811,
// 4 × 24 668, 4 × 32 560–680 (BENCHMARKS.md).
//
// Every invocation runs every loop trip (the broadcasts need the whole subgroup): a pixel outside
// the input, or past the output, reads a valid address and is scaled by zero; lanes whose
// channels are past C_out/groups read the zero padding of the weights and store nothing.

const LANE_CHANNELS: u32 = 4u;
const STRIP: u32 = 32u; // 4 pixels per lane × 8 lanes

// [groups, kH, kW, C_in/groups, C_out/groups padded to LANE_CHANNELS · WORKGROUP_SIZE], read
// LANE_CHANNELS channels at a time.
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;

struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

// A workgroup's strip: pixels first … first + STRIP − 1 of a flat pixel order, of phase (ry, rx)
// for the transposed kernel (0, 0 for the forward one).
struct Strip { first: u32, ry: u32, rx: u32 }

// Where a pixel reads one tap of the group's first input channel, and 1 if that lies inside the
// input (0: `at` is a valid address, scaled by zero).
struct TapSource { at: u32, scale: f32 }

// Where a pixel's sums go: sample n, pixel oy·OW + ox, if the pixel exists.
struct OutputPixel { n: u32, pixel: u32, valid: bool }

// The invocation's channels and the sizes its loops use.
struct Lanes { group: u32, cig: u32, cog: u32, co_local: u32, row: u32, plane: u32, k: u32 }

fn lanes_of(invocation: Invocation) -> Lanes {
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let block = LANE_CHANNELS * WORKGROUP_SIZE;
    let blocks = (cog + block - 1u) / block;
    let co_local = (invocation.wid.y % blocks) * block + LANE_CHANNELS * invocation.local;
    // row: vec4s per (tap, input channel); k: this lane loads pixels k, k + 8, k + 16, k + 24.
    return Lanes(invocation.wid.y / blocks, cig, cog, co_local, blocks * WORKGROUP_SIZE, p.in_h * p.in_w, invocation.lane % 8u);
}

// The workgroup's index among those spread over x (and z, when x alone would pass the device
// limit); y spreads the channel blocks.
fn strip_index(invocation: Invocation) -> u32 {
    return invocation.wid.z * invocation.workgroups.x + invocation.wid.x;
}

// a0 … a7: the sums of pixels 0 … 7 of the strip, b… of 8 … 15, c… of 16 … 23, d… of 24 … 31,
// each for the invocation's four channels.
struct Sums {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>,
    b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, b4: vec4<f32>, b5: vec4<f32>, b6: vec4<f32>, b7: vec4<f32>,
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>, c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
    d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, d4: vec4<f32>, d5: vec4<f32>, d6: vec4<f32>, d7: vec4<f32>,
}

// The sums of the strip over all taps (those `tap_visited` lets through) and input channels of
// the group. The sums are plain locals across the whole loop nest, as in the forward kernel before
// its loop was shared (copying them through a struct once per tap measured 0–8% slower).
fn accumulate(strip: Strip, l: Lanes) -> Sums {
    var a0 = vec4<f32>(); var a1 = vec4<f32>(); var a2 = vec4<f32>(); var a3 = vec4<f32>();
    var a4 = vec4<f32>(); var a5 = vec4<f32>(); var a6 = vec4<f32>(); var a7 = vec4<f32>();
    var b0 = vec4<f32>(); var b1 = vec4<f32>(); var b2 = vec4<f32>(); var b3 = vec4<f32>();
    var b4 = vec4<f32>(); var b5 = vec4<f32>(); var b6 = vec4<f32>(); var b7 = vec4<f32>();
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    var d0 = vec4<f32>(); var d1 = vec4<f32>(); var d2 = vec4<f32>(); var d3 = vec4<f32>();
    var d4 = vec4<f32>(); var d5 = vec4<f32>(); var d6 = vec4<f32>(); var d7 = vec4<f32>();
    for (var ky = 0u; ky < p.k_h; ky++) {
        for (var kx = 0u; kx < p.k_w; kx++) {
            // The same answer for the whole workgroup, so the loops stay uniform.
            if (!tap_visited(strip, ky, kx)) {
                continue;
            }
            let a = tap_source(strip, l.k, ky, kx, l.group);
            let b = tap_source(strip, l.k + 8u, ky, kx, l.group);
            let c = tap_source(strip, l.k + 16u, ky, kx, l.group);
            let d = tap_source(strip, l.k + 24u, ky, kx, l.group);
            let scale = vec4<f32>(a.scale, b.scale, c.scale, d.scale);
            var w_at = ((l.group * p.k_h + ky) * p.k_w + kx) * l.cig * l.row + l.co_local / LANE_CHANNELS;
            var offset = 0u;
            for (var ci = 0u; ci < l.cig; ci++) {
                let x = vec4<f32>(input[a.at + offset], input[b.at + offset], input[c.at + offset], input[d.at + offset]) * scale;
                let w = weight[w_at];
                var xk = subgroupBroadcast(x, 0u); a0 += xk.x * w; b0 += xk.y * w; c0 += xk.z * w; d0 += xk.w * w;
                xk = subgroupBroadcast(x, 1u); a1 += xk.x * w; b1 += xk.y * w; c1 += xk.z * w; d1 += xk.w * w;
                xk = subgroupBroadcast(x, 2u); a2 += xk.x * w; b2 += xk.y * w; c2 += xk.z * w; d2 += xk.w * w;
                xk = subgroupBroadcast(x, 3u); a3 += xk.x * w; b3 += xk.y * w; c3 += xk.z * w; d3 += xk.w * w;
                xk = subgroupBroadcast(x, 4u); a4 += xk.x * w; b4 += xk.y * w; c4 += xk.z * w; d4 += xk.w * w;
                xk = subgroupBroadcast(x, 5u); a5 += xk.x * w; b5 += xk.y * w; c5 += xk.z * w; d5 += xk.w * w;
                xk = subgroupBroadcast(x, 6u); a6 += xk.x * w; b6 += xk.y * w; c6 += xk.z * w; d6 += xk.w * w;
                xk = subgroupBroadcast(x, 7u); a7 += xk.x * w; b7 += xk.y * w; c7 += xk.z * w; d7 += xk.w * w;
                offset += l.plane;
                w_at += l.row;
            }
        }
    }
    return Sums(a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7,
                c0, c1, c2, c3, c4, c5, c6, c7, d0, d1, d2, d3, d4, d5, d6, d7);
}

// Stores pixel j's sums (if the pixel exists) for the lane's channels that exist.
fn store_pixel(strip: Strip, j: u32, l: Lanes, sums: vec4<f32>) {
    let out = output_pixel(strip, j);
    if (!out.valid) {
        return;
    }
    for (var c = 0u; c < LANE_CHANNELS && l.co_local + c < l.cog; c++) {
        let co = l.group * l.cog + l.co_local + c;
        store((out.n * p.c_out + co) * p.out_h * p.out_w + out.pixel, sums[c] + initial_value(co));
    }
}

fn store_sums(s: Sums, strip: Strip, l: Lanes) {
    store_pixel(strip, 0u, l, s.a0); store_pixel(strip, 1u, l, s.a1); store_pixel(strip, 2u, l, s.a2); store_pixel(strip, 3u, l, s.a3);
    store_pixel(strip, 4u, l, s.a4); store_pixel(strip, 5u, l, s.a5); store_pixel(strip, 6u, l, s.a6); store_pixel(strip, 7u, l, s.a7);
    store_pixel(strip, 8u, l, s.b0); store_pixel(strip, 9u, l, s.b1); store_pixel(strip, 10u, l, s.b2); store_pixel(strip, 11u, l, s.b3);
    store_pixel(strip, 12u, l, s.b4); store_pixel(strip, 13u, l, s.b5); store_pixel(strip, 14u, l, s.b6); store_pixel(strip, 15u, l, s.b7);
    store_pixel(strip, 16u, l, s.c0); store_pixel(strip, 17u, l, s.c1); store_pixel(strip, 18u, l, s.c2); store_pixel(strip, 19u, l, s.c3);
    store_pixel(strip, 20u, l, s.c4); store_pixel(strip, 21u, l, s.c5); store_pixel(strip, 22u, l, s.c6); store_pixel(strip, 23u, l, s.c7);
    store_pixel(strip, 24u, l, s.d0); store_pixel(strip, 25u, l, s.d1); store_pixel(strip, 26u, l, s.d2); store_pixel(strip, 27u, l, s.d3);
    store_pixel(strip, 28u, l, s.d4); store_pixel(strip, 29u, l, s.d5); store_pixel(strip, 30u, l, s.d6); store_pixel(strip, 31u, l, s.d7);
}
