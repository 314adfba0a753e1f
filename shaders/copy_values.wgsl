// Copies `len` values from `source` to `destination`, one per invocation: the copies between
// tensors that a buffer copy cannot make, whose byte offsets or size are not multiples of 4 (odd
// offsets in f16). The bindings start at an aligned offset before the values; `source_first` and
// `destination_first` count from there.

struct ValueCopy { source_first: u32, destination_first: u32, len: u32, unused: u32 }

@group(0) @binding(0) var<uniform> c: ValueCopy;
@group(0) @binding(1) var<storage, read> source: array<Stored>;
@group(0) @binding(2) var<storage, read_write> destination: array<Stored>;

// Invocations per workgroup: the size the host dispatches with (`Shader::workgroup_size`).
override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn copy_values(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) workgroups: vec3<u32>) {
    let i = gid.y * workgroups.x * WORKGROUP_SIZE + gid.x;
    if (i < c.len) {
        destination[c.destination_first + i] = source[c.source_first + i];
    }
}
