"""Kenyan places with approximate coordinates (Faker's Kenyan locales have no places)."""

PLACES: tuple[tuple[str, float, float], ...] = (
    ("Nairobi", -1.2864, 36.8172), ("Mombasa", -4.0435, 39.6682), ("Kisumu", -0.0917, 34.7680),
    ("Nakuru", -0.3031, 36.0800), ("Eldoret", 0.5143, 35.2698), ("Thika", -1.0333, 37.0693),
    ("Malindi", -3.2192, 40.1169), ("Kitale", 1.0157, 35.0062), ("Garissa", -0.4532, 39.6461),
    ("Kakamega", 0.2827, 34.7519), ("Nyeri", -0.4201, 36.9476), ("Machakos", -1.5177, 37.2634),
    ("Meru", 0.0463, 37.6559), ("Kericho", -0.3677, 35.2831), ("Kisii", -0.6817, 34.7667),
    ("Naivasha", -0.7167, 36.4333), ("Kilifi", -3.6305, 39.8499), ("Voi", -3.3961, 38.5561),
    ("Lamu", -2.2717, 40.9020), ("Embu", -0.5390, 37.4574), ("Bungoma", 0.5635, 34.5606),
    ("Busia", 0.4608, 34.1115), ("Kwale", -4.1737, 39.4521), ("Ukunda", -4.2870, 39.5666),
    ("Kibera", -1.3133, 36.7876), ("Mathare", -1.2600, 36.8580), ("Kangemi", -1.2650, 36.7480),
    ("Bangladesh", -4.0110, 39.6080), ("Mikindani", -4.0500, 39.6300),
    ("Kawangware", -1.2833, 36.7500),
    ("Gatina", -1.2740, 36.7560), ("Chaani", -4.0200, 39.6100), ("Miritini", -3.9830, 39.5960),
    ("Homa Bay", -0.5273, 34.4571), ("Isiolo", 0.3546, 37.5822), ("Narok", -1.0800, 35.8600),
)

PRODUCTS: tuple[str, ...] = (
    "maize", "beans", "milk", "eggs", "charcoal", "water", "tailoring", "transport", "fish",
    "vegetables", "airtime", "clothes", "firewood", "mandazi", "school fees", "shoe repair",
)
