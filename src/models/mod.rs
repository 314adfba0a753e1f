//! Networks built from the ops, named as torchvision names their parameters: ResNet backbones
//! with a configurable output stride, and the DeepLabv3 and FCN segmentation heads on them.

mod builder;
pub mod resnet;
pub mod segmentation;

pub use builder::BN_EPS;

/// The stage a layer belongs to, from its name: `stem` for the backbone's layers before layer1
/// (`conv1`, `maxpool`), `aspp` for DeepLabv3's ASPP (`classifier.0.*`), otherwise the name's
/// first component (`layer1` … `layer4`, `classifier` — the rest of a head —, `aux_classifier`,
/// `upsample`, `aux_upsample`).
pub fn stage(layer_name: &str) -> &str {
    let first = layer_name.split('.').next().unwrap_or(layer_name);
    match first {
        "conv1" | "bn1" | "relu" | "maxpool" => "stem",
        "classifier" if layer_name.starts_with("classifier.0.") => "aspp",
        _ => first,
    }
}
