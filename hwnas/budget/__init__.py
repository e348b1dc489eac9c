"""Latency budgets: the differentiable costs each method defines from a LUT (`costs`), the multiple-choice
knapsack (`knapsack`) and the projection of architecture weights onto a budget (`projection`)."""
