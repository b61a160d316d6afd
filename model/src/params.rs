//! Parameter names come from one place: the path each variable is created under in the
//! `VarStore` (`p / "dense"` makes `….dense.weight`). A model's Hugging Face names are those
//! paths below the model's root, listed in the order the variables were created, which is
//! module order (PyTorch's `state_dict` order: `dense.weight` before `dense.bias`, block 0
//! before block 1), so no module lists its tensors' names a second time.
//!
//! The only names written by hand are the ties: tensors one module uses that another
//! created (the generator's embeddings and output weight, see [`Electra`](crate::Electra)).

use std::collections::HashMap;
use std::sync::PoisonError;

use tch::{nn, Tensor};

/// The `VarStore` name prefix of `p`: `""` at the root, `"a.b."` below it.
pub(crate) fn prefix_of(p: &nn::Path) -> String {
    let parts: Vec<&str> = p.components().collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}.", parts.join("."))
    }
}

/// Every variable of `vs` with its full `VarStore` name, in creation order; detached views
/// of the variables (same storage, no gradient).
pub fn variables_in_order(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let variables = vs.variables_.lock().unwrap_or_else(PoisonError::into_inner);
    // The store keeps names in a map and the creation order in a list of tensors: match
    // them by storage (a data pointer narrows the search, `is_set_to` decides).
    let mut by_pointer: HashMap<usize, Vec<(&String, &Tensor)>> = HashMap::new();
    for (name, tensor) in &variables.named_variables {
        by_pointer
            .entry(tensor.data_ptr() as usize)
            .or_default()
            .push((name, tensor));
    }
    let mut ordered = Vec::with_capacity(variables.named_variables.len());
    for var in &variables.trainable_variables {
        let Some(candidates) = by_pointer.get_mut(&(var.tensor.data_ptr() as usize)) else {
            continue;
        };
        if let Some(i) = candidates
            .iter()
            .position(|(_, t)| t.is_set_to(&var.tensor))
        {
            let (name, tensor) = candidates.remove(i);
            ordered.push((name.clone(), tensor.detach()));
        }
    }
    // Variables created as not trainable (none of ours) follow, by name.
    let mut untrained: Vec<(&String, &Tensor)> = by_pointer.into_values().flatten().collect();
    untrained.sort_by(|a, b| a.0.cmp(b.0));
    ordered.extend(
        untrained
            .into_iter()
            .map(|(name, tensor)| (name.clone(), tensor.detach())),
    );
    ordered
}

/// The variables of `vs` whose names start with `prefix`, named without it, in creation
/// order; detached views of the variables.
pub fn variables_under(vs: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    variables_in_order(vs)
        .into_iter()
        .filter_map(|(name, tensor)| Some((name.strip_prefix(prefix)?.to_string(), tensor)))
        .collect()
}

/// `named` with `(name, tensor)` inserted before the first entry that starts with
/// `module` (at the end when there is none): where a tied weight goes in its module's
/// list, as `weight` comes before `bias`.
pub(crate) fn insert_tied(
    named: &mut Vec<(String, Tensor)>,
    module: &str,
    name: String,
    tensor: Tensor,
) {
    let at = named
        .iter()
        .position(|(n, _)| n.starts_with(module))
        .unwrap_or(named.len());
    named.insert(at, (name, tensor));
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn variables_come_in_creation_order_under_their_store_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let block = &root / "block";
        let w = (&block / "dense").var("weight", &[2, 2], nn::Init::Const(1.0));
        let _b = (&block / "dense").var("bias", &[2], nn::Init::Const(0.0));
        let _a = (&block / "LayerNorm").var("weight", &[2], nn::Init::Const(1.0));
        let _z = root.var("alpha", &[1], nn::Init::Const(3.0));
        let names: Vec<String> = variables_in_order(&vs)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "block.dense.weight",
                "block.dense.bias",
                "block.LayerNorm.weight",
                "alpha"
            ]
        );
        let under = variables_under(&vs, &prefix_of(&block));
        assert_eq!(under.len(), 3);
        assert_eq!(under[0].0, "dense.weight");
        assert_eq!(under[0].1.data_ptr(), w.data_ptr(), "same storage");
        assert!(!under[0].1.requires_grad());
        assert_eq!(prefix_of(&root), "");
        assert_eq!(prefix_of(&(&block / "dense")), "block.dense.");
    }

    #[test]
    fn a_tied_weight_goes_first_in_its_module() {
        let t = || Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let mut named = vec![
            ("head.dense.weight".to_string(), t()),
            ("lm_head.bias".to_string(), t()),
        ];
        insert_tied(&mut named, "lm_head.", "lm_head.weight".into(), t());
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["head.dense.weight", "lm_head.weight", "lm_head.bias"]
        );
    }
}
