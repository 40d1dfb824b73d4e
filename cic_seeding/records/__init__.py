"""Record formats CIC speaks: person documents, vCards, phone numbers, chain specs, pointers."""
