// 2-D convolution with output channels across lanes (devices with subgroups of at least 8): each
// invocation of a workgroup owns LANE_CHANNELS consecutive output channels (invocation i:
// channels 4i … 4i + 3 of the workgroup's block), and the whole workgroup computes one strip of
// STRIP consecutive output pixels (in flat n, oy, ox order, so a strip may run on into the next
// row). Each invocation keeps its 4 channels × 32 pixels of sums in registers: 32 vec4s with
// constant names (a matrix-typed version, `m += outer(w, x)`, ran 12% slower on lavapipe).
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
// the input, or past the last output pixel, reads a valid address and is scaled by zero; lanes
// whose channels are past C_out/groups read the zero padding of the weights and store nothing.

const STRIP: u32 = 32u; // 4 pixels per lane × 8 lanes

// Output channels per invocation: its four weights per (tap, input channel) are one vec4 load.
const LANE_CHANNELS: u32 = 4u;

// [groups, kH, kW, C_in/groups, C_out/groups padded to LANE_CHANNELS · WORKGROUP_SIZE], read
// LANE_CHANNELS channels at a time.
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;

struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

// Where output pixel `f` (flat over batch, rows, columns) reads tap (ky, kx) of the group's first
// input channel, and 1 if that lies inside the input (0: read `at`, a valid address, and scale by 0).
struct TapSource { at: u32, scale: f32 }

fn tap_source(f: u32, ky: u32, kx: u32, group: u32) -> TapSource {
    let out_plane = p.out_h * p.out_w;
    let live = f < p.batch * out_plane;
    let g = select(0u, f, live);
    let n = g / out_plane;
    let oy = (g % out_plane) / p.out_w;
    let ox = g % p.out_w;
    let iy = i32(oy * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let ix = i32(ox * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    let inside = live && iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    let first_channel = n * p.c_in + group * (p.c_in / p.groups);
    let at = (first_channel * p.in_h + select(0u, u32(iy), inside)) * p.in_w + select(0u, u32(ix), inside);
    return TapSource(at, select(0.0, 1.0, inside));
}

// Stores the sums of output pixel `f` (if it exists) for the channels co_local… of `group` that exist.
fn store_pixel(f: u32, group: u32, co_local: u32, cog: u32, sums: vec4<f32>) {
    let out_plane = p.out_h * p.out_w;
    if (f >= p.batch * out_plane) {
        return;
    }
    for (var c = 0u; c < LANE_CHANNELS && co_local + c < cog; c++) {
        let co = group * cog + co_local + c;
        store(((f / out_plane) * p.c_out + co) * out_plane + f % out_plane, sums[c] + initial_value(co));
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_lanes(invocation: Invocation) {
    // x (and z, when x alone would pass the device limit) spread the strips; y the channel blocks.
    let first = (invocation.wid.z * invocation.workgroups.x + invocation.wid.x) * STRIP;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let block = LANE_CHANNELS * WORKGROUP_SIZE;
    let blocks = (cog + block - 1u) / block;
    let group = invocation.wid.y / blocks;
    let co_local = (invocation.wid.y % blocks) * block + LANE_CHANNELS * invocation.local;
    let row = blocks * WORKGROUP_SIZE; // vec4s per (tap, input channel)
    let plane = p.in_h * p.in_w;
    let k = invocation.lane % 8u; // this lane loads the inputs of pixels k, k + 8, k + 16, k + 24

    // a0 … a7: the sums of pixels 0 … 7 of the strip, b0 … b7 those of pixels 8 … 15, c… of
    // 16 … 23, d… of 24 … 31, each for the invocation's four channels.
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
            let a = tap_source(first + k, ky, kx, group);
            let b = tap_source(first + k + 8u, ky, kx, group);
            let c = tap_source(first + k + 16u, ky, kx, group);
            let d = tap_source(first + k + 24u, ky, kx, group);
            var w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_local / LANE_CHANNELS;
            var offset = 0u;
            for (var ci = 0u; ci < cig; ci++) {
                let x = vec4<f32>(input[a.at + offset], input[b.at + offset], input[c.at + offset], input[d.at + offset]) * vec4<f32>(a.scale, b.scale, c.scale, d.scale);
                let w = weight[w_at];
                var xk = subgroupBroadcast(x, 0u); a0 += xk.x * w; b0 += xk.y * w; c0 += xk.z * w; d0 += xk.w * w;
                xk = subgroupBroadcast(x, 1u); a1 += xk.x * w; b1 += xk.y * w; c1 += xk.z * w; d1 += xk.w * w;
                xk = subgroupBroadcast(x, 2u); a2 += xk.x * w; b2 += xk.y * w; c2 += xk.z * w; d2 += xk.w * w;
                xk = subgroupBroadcast(x, 3u); a3 += xk.x * w; b3 += xk.y * w; c3 += xk.z * w; d3 += xk.w * w;
                xk = subgroupBroadcast(x, 4u); a4 += xk.x * w; b4 += xk.y * w; c4 += xk.z * w; d4 += xk.w * w;
                xk = subgroupBroadcast(x, 5u); a5 += xk.x * w; b5 += xk.y * w; c5 += xk.z * w; d5 += xk.w * w;
                xk = subgroupBroadcast(x, 6u); a6 += xk.x * w; b6 += xk.y * w; c6 += xk.z * w; d6 += xk.w * w;
                xk = subgroupBroadcast(x, 7u); a7 += xk.x * w; b7 += xk.y * w; c7 += xk.z * w; d7 += xk.w * w;
                offset += plane;
                w_at += row;
            }
        }
    }
    store_pixel(first, group, co_local, cog, a0); store_pixel(first + 1u, group, co_local, cog, a1);
    store_pixel(first + 2u, group, co_local, cog, a2); store_pixel(first + 3u, group, co_local, cog, a3);
    store_pixel(first + 4u, group, co_local, cog, a4); store_pixel(first + 5u, group, co_local, cog, a5);
    store_pixel(first + 6u, group, co_local, cog, a6); store_pixel(first + 7u, group, co_local, cog, a7);
    store_pixel(first + 8u, group, co_local, cog, b0); store_pixel(first + 9u, group, co_local, cog, b1);
    store_pixel(first + 10u, group, co_local, cog, b2); store_pixel(first + 11u, group, co_local, cog, b3);
    store_pixel(first + 12u, group, co_local, cog, b4); store_pixel(first + 13u, group, co_local, cog, b5);
    store_pixel(first + 14u, group, co_local, cog, b6); store_pixel(first + 15u, group, co_local, cog, b7);
    store_pixel(first + 16u, group, co_local, cog, c0); store_pixel(first + 17u, group, co_local, cog, c1);
    store_pixel(first + 18u, group, co_local, cog, c2); store_pixel(first + 19u, group, co_local, cog, c3);
    store_pixel(first + 20u, group, co_local, cog, c4); store_pixel(first + 21u, group, co_local, cog, c5);
    store_pixel(first + 22u, group, co_local, cog, c6); store_pixel(first + 23u, group, co_local, cog, c7);
    store_pixel(first + 24u, group, co_local, cog, d0); store_pixel(first + 25u, group, co_local, cog, d1);
    store_pixel(first + 26u, group, co_local, cog, d2); store_pixel(first + 27u, group, co_local, cog, d3);
    store_pixel(first + 28u, group, co_local, cog, d4); store_pixel(first + 29u, group, co_local, cog, d5);
    store_pixel(first + 30u, group, co_local, cog, d6); store_pixel(first + 31u, group, co_local, cog, d7);
}
