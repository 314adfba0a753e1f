// Bindings and epilogue shared by the convolution kernels (forward and transposed). Each
// kernel declares binding 2, its weight, in the layout it reads. Tensors are stored as `Stored`
// and summed as `Acc` (the precision prelude, src/gpu/shaders.rs): converted on load and store.

@group(0) @binding(1) var<storage, read> input: array<Stored>;    // [N, C_in, H, W]
@group(0) @binding(3) var<storage, read> bias: array<Stored>;     // [C_out], or one unused zero
@group(0) @binding(4) var<storage, read> residual: array<Stored>; // like output, or one unused zero
@group(0) @binding(5) var<storage, read_write> output: array<Stored>; // [N, C_out, OH, OW]

fn initial_value(c: u32) -> Acc {
    if (p.has_bias != 0u) {
        return Acc(bias[c]);
    }
    return 0.0;
}

// The fused epilogue: residual add, then ReLU, then the store at flat output index `flat`.
fn store(flat: u32, value: Acc) {
    var v = value;
    if (p.has_residual != 0u) {
        v += Acc(residual[flat]);
    }
    if (p.relu != 0u) {
        v = max(v, 0.0);
    }
    output[flat] = Stored(v);
}
