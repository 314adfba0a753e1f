//! A dense f32 tensor in C (row-major) order: NCHW for activations, as PyTorch lays them out.

/// An owned f32 tensor with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Returned by [`Tensor::new`] when the data does not fill the shape.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("shape {shape:?} holds {expected} elements, but {got} were given")]
pub struct LengthMismatch {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub got: usize,
}

impl Tensor {
    /// A tensor of `shape` holding `data` in C order.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, LengthMismatch> {
        let expected = shape.iter().product();
        if expected != data.len() {
            return Err(LengthMismatch { shape, expected, got: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Tensor { shape, data: vec![0.0; len] }
    }

    /// A tensor whose element at each multi-index is `f(index)`.
    pub fn from_fn(shape: Vec<usize>, mut f: impl FnMut(&[usize]) -> f32) -> Self {
        let len: usize = shape.iter().product();
        let mut index = vec![0; shape.len()];
        let mut data = Vec::with_capacity(len);
        for _ in 0..len {
            data.push(f(&index));
            for axis in (0..shape.len()).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Tensor { shape, data }
    }

    /// Deterministic pseudo-random values uniform in `[-1, 1)`, from `seed` (SplitMix64).
    pub fn random(shape: Vec<usize>, seed: u64) -> Self {
        let mut state = seed;
        Tensor::from_fn(shape, |_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
