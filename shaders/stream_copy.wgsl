// The device's attainable memory bandwidth (`atrous bench --peak`): every invocation copies
// vec4s from `source` to `sink`, striding by the whole grid, so one dispatch reads and writes
// each buffer once. Bytes per dispatch = 2 · 16 · count.

struct StreamParams {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: StreamParams;
@group(0) @binding(1) var<storage, read> source: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<vec4<f32>>;

override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let stride = workgroups.x * WORKGROUP_SIZE;
    for (var i = gid.x; i < params.count; i += stride) {
        sink[i] = source[i];
    }
}
