// Shared by every sliding-window kernel (prepended to each kernel file at load time).
// Mirrors `WindowUniform` in src/gpu/window.rs field for field.
struct Window {
    batch: u32, c_in: u32, in_h: u32, in_w: u32,
    c_out: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    has_bias: u32, has_residual: u32, relu: u32, skip_padding_taps: u32,
    // The ends of the output's column segments, within which every column reads the same taps
    // (`WindowGeometry::column_segments`; forward ops, else all the output width).
    column_ends: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Window;

// The rows and columns, as intervals, that `count` consecutive pixels from flat pixel `first`
// (n · h · w + y · w + x) of the batch's h × w grids lie in. Conservative: all columns where they
// span rows, all rows where they span samples.
struct PixelRect { y0: u32, y1: u32, x0: u32, x1: u32 }

fn pixel_rect(first: u32, count: u32, h: u32, w: u32) -> PixelRect {
    let plane = h * w;
    let last = min(first + count, p.batch * plane) - 1u;
    let one_sample = first / plane == last / plane;
    let head = select(0u, first % plane, one_sample);
    let tail = select(plane - 1u, last % plane, one_sample);
    let one_row = head / w == tail / w;
    return PixelRect(head / w, tail / w, select(0u, head % w, one_row), select(w - 1u, tail % w, one_row));
}

// Whether positions o0 … o1 of one axis of a forward window op read tap k inside the input.
fn axis_reads_tap(o0: u32, o1: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> bool {
    let i0 = i32(o0 * stride + k * dil) - i32(pad);
    let i1 = i32(o1 * stride + k * dil) - i32(pad);
    return i1 >= 0 && i0 < i32(size);
}

// The same for positions m0 … m1 of one axis of a transposed op's phase grid (phase r, whose
// taps only are asked): grid position m is output m · stride + r, which reads input
// (m · stride + r + pad − k · dil) / stride, exactly.
fn phase_axis_reads_tap(m0: u32, m1: u32, r: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> bool {
    let t0 = i32(m0 * stride + r + pad) - i32(k * dil);
    let t1 = i32(m1 * stride + r + pad) - i32(k * dil);
    return t1 >= 0 && max(t0, 0) / i32(stride) < i32(size);
}

// Whether some output pixel of `r` of a forward window op reads tap (ky, kx) inside the input.
// A tap that all of them read in the padding would only add zeros: most of the work of a large
// dilation on a small map (DeepLabv3's ASPP). Kernels ask it for pixels that a whole workgroup
// (or subgroup) shares, so the answer is uniform. Always true when the host turned skipping off
// (`skip_padding_taps`).
fn rect_reads_tap(r: PixelRect, ky: u32, kx: u32) -> bool {
    return p.skip_padding_taps == 0u
        || (axis_reads_tap(r.y0, r.y1, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h)
            && axis_reads_tap(r.x0, r.x1, kx, p.stride_w, p.pad_w, p.dil_w, p.in_w));
}

// The same for pixels `r` of a transposed op's phase grid, of phase (rx, ry) = `phase`, and one of
// that phase's taps.
fn phase_rect_reads_tap(r: PixelRect, phase: vec2<u32>, ky: u32, kx: u32) -> bool {
    return p.skip_padding_taps == 0u
        || (phase_axis_reads_tap(r.y0, r.y1, phase.y, ky, p.stride_h, p.pad_h, p.dil_h, p.in_h)
            && phase_axis_reads_tap(r.x0, r.x1, phase.x, kx, p.stride_w, p.pad_w, p.dil_w, p.in_w));
}

// `phase_rect_reads_tap` for `count` consecutive pixels from flat pixel `first` of the phase
// grid, whose columns and rows are `grid`.
fn phase_pixels_read_tap(first: u32, count: u32, grid: vec2<u32>, phase: vec2<u32>, ky: u32, kx: u32) -> bool {
    return phase_rect_reads_tap(pixel_rect(first, count, grid.y, grid.x), phase, ky, kx);
}

// Forward kernels that keep each workgroup within one column segment (lanes, GEMM) number the
// output pixels segment by segment: segment s is columns x0 … x0 + columns − 1 of every row of
// every sample, in flat (n, oy, ox) order over its columns, in workgroups of its own from
// `first_workgroup` on. Within a segment every column reads the same taps, so a workgroup skips
// a tap exactly where its pixels' rows (and the segment's columns) read only padding.
struct Segment { x0: u32, columns: u32, first_workgroup: u32 }

// The segment of workgroup `index` whose workgroups are `pixels` pixels each (workgroups past
// the last get the last segment, and pixels past its end).
fn segment_of(index: u32, pixels: u32) -> Segment {
    var x0 = 0u;
    var first = 0u;
    for (var s = 0u; s < 3u; s++) {
        let end = p.column_ends[s];
        let workgroups = (p.batch * p.out_h * (end - x0) + pixels - 1u) / pixels;
        if (index < first + workgroups || end >= p.out_w) {
            return Segment(x0, end - x0, first);
        }
        first += workgroups;
        x0 = end;
    }
    return Segment(x0, p.out_w - x0, first);
}

// Pixel f of segment `s` (`valid`: f is not past its last).
struct SegmentPixel { n: u32, oy: u32, ox: u32, valid: bool }

fn segment_pixel(s: Segment, f: u32) -> SegmentPixel {
    let plane = p.out_h * s.columns;
    let valid = f < p.batch * plane;
    let g = select(0u, f, valid);
    return SegmentPixel(g / plane, g % plane / s.columns, s.x0 + g % s.columns, valid);
}

// The rows and columns of the output that the `count` pixels of segment `s` from pixel `first`
// lie in (as `pixel_rect`).
fn segment_rect(s: Segment, first: u32, count: u32) -> PixelRect {
    let r = pixel_rect(first, count, p.out_h, s.columns);
    return PixelRect(r.y0, r.y1, s.x0 + r.x0, s.x0 + r.x1);
}
