// Prepended to every Hearth kernel (see src/gpu/tensor.rs): the per-step uniforms at
// binding 0 of group 0.
struct Step {
    // Tokens in this forward pass.
    n_tokens: u32,
    // Position of the first of them.
    pos: u32,
    _pad: vec2<u32>,
}
@group(0) @binding(0) var<uniform> step: Step;
