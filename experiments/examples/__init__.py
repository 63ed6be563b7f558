"""Small, complete examples of ShopRank plug-ins (see ``docs/custom_simulator.md``)."""
