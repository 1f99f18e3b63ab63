"""Zone/day features from user activity."""
