"""What each operator of the bandwidth suite (sfrik-bench bandwidth) moves, in passes over an
n x n matrix: the model its GB/s figures rest on, written once for the tests that check it."""

PASSES = {
    "forward": 1,
    "backward": 2,
    "forward + backward": 3,
    "value_and_grad": 2,
    "device copy": 2,
    "fallback forward": 1,
    "fallback backward": 2,
}
