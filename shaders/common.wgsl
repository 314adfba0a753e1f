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

// Whether some of the `count` consecutive output pixels from flat pixel `first` (n · OH · OW +
// oy · OW + ox) of a forward window op read tap (ky, kx) inside the input. A tap that all of them
// read in the padding would only add zeros: most of the work of a large dilation on a small map
// (DeepLabv3's ASPP). Kernels ask it for a workgroup's pixels, so the answer is uniform.
// Conservative: the pixels' rows (and, within one row, their columns) are taken as intervals,
// all columns where they span rows, all rows where they span samples. Always true when the host
// turned skipping off (`skip_padding_taps`).
fn pixels_read_tap(first: u32, count: u32, ky: u32, kx: u32) -> bool {
    if (p.skip_padding_taps == 0u) {
        return true;
    }
    let out_plane = p.out_h * p.out_w;
    let last_pixel = min(first + count, p.batch * out_plane) - 1u;
    let one_sample = first / out_plane == last_pixel / out_plane;
    let head = select(0u, first % out_plane, one_sample);
    let tail = select(out_plane - 1u, last_pixel % out_plane, one_sample);
    let one_row = head / p.out_w == tail / p.out_w;
    let ox_first = select(0u, head % p.out_w, one_row);
    let ox_last = select(p.out_w - 1u, tail % p.out_w, one_row);
    let iy_first = i32((head / p.out_w) * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let iy_last = i32((tail / p.out_w) * p.stride_h + ky * p.dil_h) - i32(p.pad_h);
    let ix_first = i32(ox_first * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    let ix_last = i32(ox_last * p.stride_w + kx * p.dil_w) - i32(p.pad_w);
    return iy_last >= 0 && iy_first < i32(p.in_h) && ix_last >= 0 && ix_first < i32(p.in_w);
}
