// How a tiled kernel fetches the weights of one (tap, input channel), on any device: every
// invocation loads all eight vec4s itself. Also declares the kernels' built-in inputs.

struct Invocation {
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    // Unused here: the kernels pass it on to `tap_weights`, whose subgroup version needs a lane.
    @builtin(local_invocation_index) lane: u32,
}

fn tap_weights(w_at: u32, lane: u32) -> TapWeights {
    return TapWeights(vec4<Acc>(weight[w_at]), vec4<Acc>(weight[w_at + 1u]), vec4<Acc>(weight[w_at + 2u]), vec4<Acc>(weight[w_at + 3u]),
                      vec4<Acc>(weight[w_at + 4u]), vec4<Acc>(weight[w_at + 5u]), vec4<Acc>(weight[w_at + 6u]), vec4<Acc>(weight[w_at + 7u]));
}
