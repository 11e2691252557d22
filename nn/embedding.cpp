// embedding.cpp — see embedding.h.
#include "nn/embedding.h"

#include "nn/init.h"

namespace mox::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator* gen)
    : num_embeddings(num_embeddings), dim(dim) {
  MOX_CHECK(num_embeddings > 0 && dim > 0, "Embedding: num_embeddings=", num_embeddings, " and dim=", dim,
            " must be positive");
  weight = register_parameter("weight", empty({num_embeddings, dim}));
  init::normal_(weight, 0.0, 0.02, gen);
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids); }

std::string Embedding::repr() const { return str("Embedding(", num_embeddings, ", ", dim, ")"); }

}  // namespace mox::nn
