// The register tile shared by the lanes kernels (conv2d_lanes.wgsl, conv_transpose2d_lanes.wgsl),
// for devices with subgroups of at least 8: output channels across lanes, pixels in registers.
// Each invocation of a workgroup owns LANE_CHANNELS consecutive output channels (invocation i:
// channels 16i … 16i + 15 of the workgroup's block), and the whole workgroup computes one strip of
// STRIP pixels; each kernel says which (`tap_source`, `output_pixel` and `tap_visited`, defined
// in its file).
// Each invocation keeps 16 channels × 32 pixels of sums: sixteen `Eight`s of constant names
// (the compiler keeps what fits in registers and spills the rest to the stack).
//
// Per (tap, input channel) every lane loads four vec4s of weights of its own (consecutive lanes
// read consecutive addresses) and four input values, those of pixels k, k + 8, k + 16 and k + 24
// for lane k of its subgroup; `subgroupBroadcast` hands every lane all 32 inputs. All lanes of a
// subgroup share the strip, so each input value is loaded once per subgroup instead of once per
// lane: on lavapipe, which loads storage buffers lane by lane with a bounds check for each value,
// what counts is sums per value loaded (the tile sizes tried are in BENCHMARKS.md).
//
// Every invocation runs every loop trip (the broadcasts need the whole subgroup): a pixel outside
// the input, or past the output, reads a valid address and is scaled by zero; lanes whose
// channels are past C_out/groups read the zero padding of the weights and store nothing.

// Invocations per workgroup: one subgroup of 8, the size the host dispatches with
// (`Shader::workgroup_size`).
override WORKGROUP_SIZE: u32 = 8u;

const LANE_CHANNELS: u32 = 16u; // four vec4s
const STRIP: u32 = 32u; // 4 pixels per lane × 8 lanes

// [groups, kH, kW, C_in/groups, C_out/groups padded to LANE_CHANNELS · WORKGROUP_SIZE], read
// four channels at a time.
@group(0) @binding(2) var<storage, read> weight: array<vec4<Stored>>;

struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

// A workgroup's strip: pixels first … first + STRIP − 1 of a flat pixel order (of its column
// segment for the forward kernel), of phase (ry, rx) for the transposed kernel (0, 0 for the
// forward one).
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
    return Lanes(invocation.wid.y / blocks, cig, cog, co_local, blocks * block / 4u, p.in_h * p.in_w, invocation.lane % 8u);
}

// The workgroup's index among those spread over x (and z, when x alone would pass the device
// limit); y spreads the channel blocks.
fn strip_index(invocation: Invocation) -> u32 {
    return invocation.wid.z * invocation.workgroups.x + invocation.wid.x;
}

// The sums of one vec4 of the lane's channels for eight pixels of the strip.
struct Eight { s0: vec4<Acc>, s1: vec4<Acc>, s2: vec4<Acc>, s3: vec4<Acc>, s4: vec4<Acc>, s5: vec4<Acc>, s6: vec4<Acc>, s7: vec4<Acc> }

// q<v><g>: channels 4v … 4v + 3 of the lane's, pixels 8g … 8g + 7 of the strip.
struct Sums {
    q00: Eight, q01: Eight, q02: Eight, q03: Eight,
    q10: Eight, q11: Eight, q12: Eight, q13: Eight,
    q20: Eight, q21: Eight, q22: Eight, q23: Eight,
    q30: Eight, q31: Eight, q32: Eight, q33: Eight,
}

// Adds weight vec4 `w` times the eight pixels' inputs (`lo`: the first four, `hi`: the rest).
fn add_products(q: ptr<function, Eight>, w: vec4<Acc>, lo: vec4<Acc>, hi: vec4<Acc>) {
    (*q).s0 += lo.x * w; (*q).s1 += lo.y * w; (*q).s2 += lo.z * w; (*q).s3 += lo.w * w;
    (*q).s4 += hi.x * w; (*q).s5 += hi.y * w; (*q).s6 += hi.z * w; (*q).s7 += hi.w * w;
}

// The sums of the strip over all taps (those `tap_visited` lets through) and input channels of
// the group.
// (Sixteen locals rather than one `Sums`: naga's SPIR-V writer panics on a pointer to a struct
// member passed as an argument.)
fn accumulate(strip: Strip, l: Lanes) -> Sums {
    var q00 = Eight(); var q01 = Eight(); var q02 = Eight(); var q03 = Eight();
    var q10 = Eight(); var q11 = Eight(); var q12 = Eight(); var q13 = Eight();
    var q20 = Eight(); var q21 = Eight(); var q22 = Eight(); var q23 = Eight();
    var q30 = Eight(); var q31 = Eight(); var q32 = Eight(); var q33 = Eight();
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
            var w_at = ((l.group * p.k_h + ky) * p.k_w + kx) * l.cig * l.row + l.co_local / 4u;
            var offset = 0u;
            for (var ci = 0u; ci < l.cig; ci++) {
                let x = vec4<f32>(vec4<Stored>(input[a.at + offset], input[b.at + offset], input[c.at + offset], input[d.at + offset])) * scale;
                // xj: lane j's four inputs, those of pixels j, j + 8, j + 16, j + 24.
                let x0 = subgroupBroadcast(x, 0u); let x1 = subgroupBroadcast(x, 1u);
                let x2 = subgroupBroadcast(x, 2u); let x3 = subgroupBroadcast(x, 3u);
                let x4 = subgroupBroadcast(x, 4u); let x5 = subgroupBroadcast(x, 5u);
                let x6 = subgroupBroadcast(x, 6u); let x7 = subgroupBroadcast(x, 7u);
                // The inputs of pixels 8g … 8g + 7: lo<g> the first four, hi<g> the rest.
                let lo0 = vec4<Acc>(vec4<f32>(x0.x, x1.x, x2.x, x3.x)); let hi0 = vec4<Acc>(vec4<f32>(x4.x, x5.x, x6.x, x7.x));
                let lo1 = vec4<Acc>(vec4<f32>(x0.y, x1.y, x2.y, x3.y)); let hi1 = vec4<Acc>(vec4<f32>(x4.y, x5.y, x6.y, x7.y));
                let lo2 = vec4<Acc>(vec4<f32>(x0.z, x1.z, x2.z, x3.z)); let hi2 = vec4<Acc>(vec4<f32>(x4.z, x5.z, x6.z, x7.z));
                let lo3 = vec4<Acc>(vec4<f32>(x0.w, x1.w, x2.w, x3.w)); let hi3 = vec4<Acc>(vec4<f32>(x4.w, x5.w, x6.w, x7.w));
                let w0 = vec4<Acc>(weight[w_at]); let w1 = vec4<Acc>(weight[w_at + 1u]); let w2 = vec4<Acc>(weight[w_at + 2u]); let w3 = vec4<Acc>(weight[w_at + 3u]);
                add_products(&q00, w0, lo0, hi0); add_products(&q01, w0, lo1, hi1); add_products(&q02, w0, lo2, hi2); add_products(&q03, w0, lo3, hi3);
                add_products(&q10, w1, lo0, hi0); add_products(&q11, w1, lo1, hi1); add_products(&q12, w1, lo2, hi2); add_products(&q13, w1, lo3, hi3);
                add_products(&q20, w2, lo0, hi0); add_products(&q21, w2, lo1, hi1); add_products(&q22, w2, lo2, hi2); add_products(&q23, w2, lo3, hi3);
                add_products(&q30, w3, lo0, hi0); add_products(&q31, w3, lo1, hi1); add_products(&q32, w3, lo2, hi2); add_products(&q33, w3, lo3, hi3);
                offset += l.plane;
                w_at += l.row;
            }
        }
    }
    return Sums(q00, q01, q02, q03, q10, q11, q12, q13, q20, q21, q22, q23, q30, q31, q32, q33);
}

// Stores the sums of channels `first` … `first` + 3 of the lane's for pixel j (if the pixel
// exists), those of the channels that exist.
fn store_pixel(strip: Strip, j: u32, l: Lanes, first: u32, sums: vec4<Acc>) {
    let out = output_pixel(strip, j);
    if (!out.valid) {
        return;
    }
    for (var c = 0u; c < 4u && l.co_local + first + c < l.cog; c++) {
        let co = l.group * l.cog + l.co_local + first + c;
        store((out.n * p.c_out + co) * p.out_h * p.out_w + out.pixel, sums[c] + initial_value(co));
    }
}

// Stores q, the sums of channels `first` … `first` + 3 of the lane's for pixels 8g … 8g + 7.
fn store_eight(strip: Strip, g: u32, l: Lanes, first: u32, q: Eight) {
    store_pixel(strip, 8u * g, l, first, q.s0); store_pixel(strip, 8u * g + 1u, l, first, q.s1);
    store_pixel(strip, 8u * g + 2u, l, first, q.s2); store_pixel(strip, 8u * g + 3u, l, first, q.s3);
    store_pixel(strip, 8u * g + 4u, l, first, q.s4); store_pixel(strip, 8u * g + 5u, l, first, q.s5);
    store_pixel(strip, 8u * g + 6u, l, first, q.s6); store_pixel(strip, 8u * g + 7u, l, first, q.s7);
}

fn store_sums(s: Sums, strip: Strip, l: Lanes) {
    store_eight(strip, 0u, l, 0u, s.q00); store_eight(strip, 1u, l, 0u, s.q01); store_eight(strip, 2u, l, 0u, s.q02); store_eight(strip, 3u, l, 0u, s.q03);
    store_eight(strip, 0u, l, 4u, s.q10); store_eight(strip, 1u, l, 4u, s.q11); store_eight(strip, 2u, l, 4u, s.q12); store_eight(strip, 3u, l, 4u, s.q13);
    store_eight(strip, 0u, l, 8u, s.q20); store_eight(strip, 1u, l, 8u, s.q21); store_eight(strip, 2u, l, 8u, s.q22); store_eight(strip, 3u, l, 8u, s.q23);
    store_eight(strip, 0u, l, 12u, s.q30); store_eight(strip, 1u, l, 12u, s.q31); store_eight(strip, 2u, l, 12u, s.q32); store_eight(strip, 3u, l, 12u, s.q33);
}
