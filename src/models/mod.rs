//! Networks built from the ops, named as torchvision names their parameters: ResNet backbones
//! with a configurable output stride, and the DeepLabv3 and FCN segmentation heads on them.

mod builder;
pub mod resnet;
pub mod segmentation;

pub use builder::BN_EPS;
