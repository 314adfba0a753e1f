// Shared by the transposed kernels that run phase by phase (conv_transpose2d_tiled.wgsl, which
// explains the decomposition, and conv_transpose2d_lanes.wgsl).

// The input index that tap k reaches output o from, (o + pad − k·dil) / stride, and whether it
// exists (the caller has checked that the division is exact).
struct Source { index: u32, inside: bool }

fn source_of(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> Source {
    let t = i32(o + pad) - i32(k * dil);
    let i = t / i32(stride);
    return Source(u32(max(i, 0)), t >= 0 && i < i32(size));
}
