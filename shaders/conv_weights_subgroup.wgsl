// How a tiled kernel fetches the weights of one (tap, input channel) on a device with subgroups
// of at least 8 invocations: lane k of each subgroup loads vec4 k % 8, and the others receive it
// by broadcast. The address is the same for the whole subgroup, and a load every lane repeats
// is what a SIMD driver such as lavapipe does worst (one scalar load per lane); here each lane
// loads something different and the broadcasts are register moves. Also declares the kernels'
// built-in inputs. The broadcasts carry f32 in every precision: broadcasting f16 would need a
// further device feature (Vulkan's shaderSubgroupExtendedTypes).

struct Invocation {
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
}

fn tap_weights(w_at: u32, lane: u32) -> TapWeights {
    let mine = vec4<f32>(weight[w_at + lane % 8u]);
    let w0 = subgroupBroadcast(mine, 0u);
    let w1 = subgroupBroadcast(mine, 1u);
    let w2 = subgroupBroadcast(mine, 2u);
    let w3 = subgroupBroadcast(mine, 3u);
    let w4 = subgroupBroadcast(mine, 4u);
    let w5 = subgroupBroadcast(mine, 5u);
    let w6 = subgroupBroadcast(mine, 6u);
    let w7 = subgroupBroadcast(mine, 7u);
    return TapWeights(vec4<Acc>(w0), vec4<Acc>(w1), vec4<Acc>(w2), vec4<Acc>(w3), vec4<Acc>(w4), vec4<Acc>(w5), vec4<Acc>(w6), vec4<Acc>(w7));
}
