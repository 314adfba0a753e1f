//! Networks built from the ops: ResNet backbones (and, later, dense-prediction heads).

pub mod resnet;
