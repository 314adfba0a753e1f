// 2-D convolution with output channels across lanes (devices with subgroups of at least 8): each
// invocation of a workgroup owns one output channel (invocation i of the workgroup: channel
// co_block + i), and the whole workgroup computes one strip of STRIP consecutive output pixels
// (in flat n, oy, ox order, so a strip may run on into the next row). Each invocation keeps its
// STRIP sums in registers (eight vec2s, constant indices).
//
// Per (tap, input channel) every lane loads one weight of its own (consecutive lanes read
// consecutive addresses) and two input values, those of pixels k and k + 8 for lane k of its
// subgroup; `subgroupBroadcast` hands every lane all sixteen inputs. All lanes of a subgroup
// share the strip, so each input value is loaded once per subgroup instead of once per lane.
//
// Every invocation runs every loop trip (the broadcasts need the whole subgroup): a pixel outside
// the input, or past the last output pixel, reads a valid address and is scaled by zero; lanes
// whose channel is past C_out/groups read the zero padding of the weights and store nothing.

const STRIP: u32 = 16u;

// [groups, kH, kW, C_in/groups, C_out/groups padded to WORKGROUP_SIZE], one f32 per channel.
@group(0) @binding(2) var<storage, read> weight: array<f32>;

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

// Stores channel `co`'s sum for output pixel `f`, if that pixel exists.
fn store_sum(f: u32, co: u32, sum: f32) {
    let out_plane = p.out_h * p.out_w;
    if (f < p.batch * out_plane) {
        store(((f / out_plane) * p.c_out + co) * out_plane + f % out_plane, sum + initial_value(co));
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_lanes(invocation: Invocation) {
    // x (and z, when x alone would pass the device limit) spread the strips; y the channel blocks.
    let first = (invocation.wid.z * invocation.workgroups.x + invocation.wid.x) * STRIP;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let blocks = (cog + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    let group = invocation.wid.y / blocks;
    let co_local = (invocation.wid.y % blocks) * WORKGROUP_SIZE + invocation.local;
    let row = blocks * WORKGROUP_SIZE; // weights per (tap, input channel)
    let plane = p.in_h * p.in_w;
    let k = invocation.lane % 8u; // this lane loads the inputs of pixels k and k + 8

    // s0 … s7: the sums of pixels (0, 8), (1, 9), … (7, 15) of the strip.
    var s0 = vec2<f32>(); var s1 = vec2<f32>(); var s2 = vec2<f32>(); var s3 = vec2<f32>();
    var s4 = vec2<f32>(); var s5 = vec2<f32>(); var s6 = vec2<f32>(); var s7 = vec2<f32>();
    for (var ky = 0u; ky < p.k_h; ky++) {
        for (var kx = 0u; kx < p.k_w; kx++) {
            let a = tap_source(first + k, ky, kx, group);
            let b = tap_source(first + k + 8u, ky, kx, group);
            var w_at = ((group * p.k_h + ky) * p.k_w + kx) * cig * row + co_local;
            var offset = 0u;
            for (var ci = 0u; ci < cig; ci++) {
                let x = vec2<f32>(input[a.at + offset] * a.scale, input[b.at + offset] * b.scale);
                let w = weight[w_at];
                s0 += subgroupBroadcast(x, 0u) * w; s1 += subgroupBroadcast(x, 1u) * w;
                s2 += subgroupBroadcast(x, 2u) * w; s3 += subgroupBroadcast(x, 3u) * w;
                s4 += subgroupBroadcast(x, 4u) * w; s5 += subgroupBroadcast(x, 5u) * w;
                s6 += subgroupBroadcast(x, 6u) * w; s7 += subgroupBroadcast(x, 7u) * w;
                offset += plane;
                w_at += row;
            }
        }
    }
    if (co_local < cog) {
        let co = group * cog + co_local;
        store_sum(first, co, s0.x); store_sum(first + 1u, co, s1.x); store_sum(first + 2u, co, s2.x); store_sum(first + 3u, co, s3.x);
        store_sum(first + 4u, co, s4.x); store_sum(first + 5u, co, s5.x); store_sum(first + 6u, co, s6.x); store_sum(first + 7u, co, s7.x);
        store_sum(first + 8u, co, s0.y); store_sum(first + 9u, co, s1.y); store_sum(first + 10u, co, s2.y); store_sum(first + 11u, co, s3.y);
        store_sum(first + 12u, co, s4.y); store_sum(first + 13u, co, s5.y); store_sum(first + 14u, co, s6.y); store_sum(first + 15u, co, s7.y);
    }
}
