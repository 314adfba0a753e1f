// One part of a channel concatenation: copies a [N, C, H·W] tensor into channels
// offset … offset + C − 1 of a [N, C_total, H·W] one. A concatenation runs it once per part.

struct Part { batch: u32, channels: u32, plane: u32, total_channels: u32, offset: u32 }

@group(0) @binding(0) var<uniform> part: Part;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let flat = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    let per_sample = part.channels * part.plane;
    if (flat >= part.batch * per_sample) {
        return;
    }
    let n = flat / per_sample;
    output[(n * part.total_channels + part.offset) * part.plane + flat % per_sample] = input[flat];
}
