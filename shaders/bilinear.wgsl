// Bilinear resizing of every channel (PyTorch's F.interpolate(mode="bilinear",
// align_corners=False)); from a 1×1 map it broadcasts. One output element per invocation.
// The sampling rule is `bilinear_taps` in src/cpu/resample.rs, computed the same way in f32 (in every precision: the values are converted on load and store).

struct Resize { planes: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32 }

@group(0) @binding(0) var<uniform> r: Resize;
@group(0) @binding(1) var<storage, read> input: array<Stored>;     // [planes, H, W]
@group(0) @binding(2) var<storage, read_write> output: array<Stored>;// [planes, OH, OW]

override WORKGROUP_SIZE: u32 = 64u;

struct Taps { first: u32, second: u32, weight: f32 }

// src = max((size_in/size_out)·(dst + ½) − ½, 0); its two neighbours and the second one's weight.
fn taps(dst: u32, size_in: u32, size_out: u32) -> Taps {
    let scale = f32(size_in) / f32(size_out);
    let src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
    let first = min(u32(src), size_in - 1u);
    return Taps(first, min(first + 1u, size_in - 1u), src - f32(first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn bilinear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let flat = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    if (flat >= r.planes * r.out_h * r.out_w) {
        return;
    }
    let x = flat % r.out_w;
    let y = (flat / r.out_w) % r.out_h;
    let plane = flat / (r.out_w * r.out_h);
    let ty = taps(y, r.in_h, r.out_h);
    let tx = taps(x, r.in_w, r.out_w);
    let base = plane * r.in_h * r.in_w;
    let top = (1.0 - tx.weight) * f32(input[base + ty.first * r.in_w + tx.first]) + tx.weight * f32(input[base + ty.first * r.in_w + tx.second]);
    let bottom = (1.0 - tx.weight) * f32(input[base + ty.second * r.in_w + tx.first]) + tx.weight * f32(input[base + ty.second * r.in_w + tx.second]);
    output[flat] = Stored((1.0 - ty.weight) * top + ty.weight * bottom);
}
