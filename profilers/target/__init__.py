"""What runs on a target board or phone (Python 3.8 + numpy + the runtime): the agent, the runtime runners and
the TensorRT engine builder. These files ship as they are; they import nothing else of hwnas."""
