// Shared by every sliding-window kernel (prepended to each kernel file at load time).
// Mirrors `WindowUniform` in src/gpu/window.rs field for field.
struct Window {
    batch: u32, c_in: u32, in_h: u32, in_w: u32,
    c_out: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    has_bias: u32, has_residual: u32, relu: u32, skip_padding_taps: u32,
}

@group(0) @binding(0) var<uniform> p: Window;
