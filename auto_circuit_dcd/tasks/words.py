"""Word lists the generators draw from (filtered per tokenizer before use)."""

NAMES = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Paul", "Kate",
    "Anna", "Lisa", "Mark", "David", "Sarah", "Laura", "Peter", "Mike", "Emma", "Jack",
    "Alice", "Bob", "Chris", "Jane", "Steve", "Rachel", "Sam", "Ben", "Lucy", "Adam",
    "Tim", "Ryan", "Eric", "Jessica", "Michelle", "Daniel", "Andrew", "Joseph", "Kevin",
    "Brian", "George", "Edward", "Richard", "Thomas", "Robert", "William", "Charles",
    "Henry", "Frank", "Scott", "Jason", "Matt", "Alex", "Joe", "Nick", "Max", "Leo",
    "Anne", "Helen", "Susan", "Linda", "Karen", "Nancy", "Betty", "Ruth", "Grace",
    "Rose", "Julia", "Maria", "Nina", "Sophie", "Kelly", "Emily", "Diana", "Victoria",
    "Jennifer", "Elizabeth", "Patrick", "Simon", "Oliver", "Harry", "Carl", "Louis",
    "Rebecca", "Christina", "Jacob", "Arthur", "Philip", "Anthony", "Bill", "Roger",
)

PLACES = (
    "store", "park", "school", "office", "garden", "hospital", "station", "restaurant",
    "library", "beach", "house", "market", "museum", "church", "bank", "airport",
)

OBJECTS = (
    "drink", "book", "ring", "ball", "gift", "letter", "bag", "pen", "kiss", "bone",
    "basketball", "computer", "necklace", "watch", "flower", "key", "cake", "phone",
)

FILLERS = (
    "It was a sunny day.", "The weather was nice.", "They had a lot of fun.",
    "It was getting late.", "The place was very busy.", "Everyone was in a good mood.",
)

ENTITIES = (
    "egg", "fan", "car", "cup", "hat", "key", "map", "pen", "bag", "book", "ring",
    "ball", "coin", "shoe", "lamp", "fork", "bell", "cake", "doll", "drum", "fish", "kite",
    "leaf", "milk", "nail", "rope", "sock", "tent", "toy", "watch", "phone", "apple",
    "chair", "clock", "plant", "radio", "spoon", "stone", "train",
)

COLOURS = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "pink", "orange",
    "purple", "grey", "gold", "silver",
)

LETTERS = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))
