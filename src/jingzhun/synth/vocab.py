"""Word pools for the simulated shop: categories, brands, product words, places and names.

Kept by hand because the simulator must build a million rows in seconds: a name library that
formats one row at a time (Faker) would take minutes. Names are sampled from frequency-weighted
pools and joined with Arrow string kernels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    name_zh: str
    weight: float  # share of catalogue and of demand
    median_price: float  # CNY
    price_sigma: float  # of log price
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    terms: tuple[str, ...]  # words for descriptions


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", "数码电子", 0.12, 699.0, 0.9,
             ("Xiaomi", "Huawei", "Anker", "Lenovo", "OPPO", "Vivo", "Sony", "Baseus"),
             ("Earbuds", "Power Bank", "Smart Watch", "Tablet", "Bluetooth Speaker", "Charger", "Phone Case", "Keyboard"),
             ("wireless", "bluetooth", "battery", "fast charging", "noise cancelling", "display", "portable")),
    Category("apparel", "服装", 0.14, 189.0, 0.6,
             ("Uniqlo", "Li-Ning", "Anta", "Bosideng", "Semir", "Peacebird", "Metersbonwe"),
             ("T-Shirt", "Hoodie", "Down Jacket", "Jeans", "Dress", "Sneakers", "Windbreaker", "Socks"),
             ("cotton", "slim fit", "breathable", "winter", "casual", "oversized", "waterproof")),
    Category("beauty", "美妆个护", 0.11, 159.0, 0.7,
             ("Perfect Diary", "Florasis", "Proya", "Winona", "L'Oreal", "Estee Lauder", "Shiseido"),
             ("Lipstick", "Serum", "Sunscreen", "Face Mask", "Cleanser", "Moisturizer", "Eyeshadow Palette"),
             ("hydrating", "matte", "SPF50", "sensitive skin", "anti-aging", "long-lasting", "natural")),
    Category("home", "家居", 0.10, 129.0, 0.8,
             ("Muji", "IKEA", "Midea", "Supor", "Joyoung", "Lock&Lock"),
             ("Pillow", "Storage Box", "Rice Cooker", "Kettle", "Towel Set", "Desk Lamp", "Bedding Set"),
             ("soft", "stainless steel", "space saving", "ceramic", "LED", "easy clean", "cozy")),
    Category("grocery", "食品生鲜", 0.13, 39.0, 0.6,
             ("Three Squirrels", "Bestore", "Yili", "Mengniu", "Nongfu Spring", "Master Kong", "Wahaha"),
             ("Mixed Nuts", "Milk", "Green Tea", "Instant Noodles", "Dried Mango", "Coffee Beans", "Rice"),
             ("organic", "family pack", "low sugar", "fresh", "imported", "snack", "breakfast")),
    Category("sports", "运动户外", 0.08, 259.0, 0.8,
             ("Li-Ning", "Anta", "Decathlon", "Xtep", "361", "Keep"),
             ("Yoga Mat", "Running Shoes", "Dumbbells", "Tent", "Cycling Jersey", "Jump Rope", "Backpack"),
             ("lightweight", "non-slip", "outdoor", "training", "durable", "cushioned", "foldable")),
    Category("books", "图书", 0.07, 49.0, 0.5,
             ("CITIC Press", "People's Literature", "Zhonghua Book", "Penguin", "Posts & Telecom Press"),
             ("Novel", "Cookbook", "Python Guide", "History of China", "Picture Book", "Exam Prep", "Biography"),
             ("bestseller", "hardcover", "illustrated", "classic", "beginner", "bilingual", "collector")),
    Category("baby", "母婴", 0.08, 149.0, 0.7,
             ("Pampers", "Merries", "Feihe", "Goodbaby", "Pigeon", "a2"),
             ("Diapers", "Infant Formula", "Baby Wipes", "Stroller", "Feeding Bottle", "Baby Carrier"),
             ("gentle", "newborn", "hypoallergenic", "soft", "stage 2", "leak-proof", "safe")),
    Category("pets", "宠物", 0.06, 89.0, 0.7,
             ("Royal Canin", "Pedigree", "Whiskas", "Myfoodie", "Petkit"),
             ("Cat Food", "Dog Food", "Cat Litter", "Pet Toy", "Water Fountain", "Leash"),
             ("grain free", "indoor", "puppy", "kitten", "natural", "automatic", "odor control")),
    Category("toys", "玩具", 0.05, 119.0, 0.8,
             ("LEGO", "Bandai", "Pop Mart", "Hasbro", "Mattel"),
             ("Building Set", "Blind Box", "Plush Toy", "RC Car", "Puzzle", "Board Game"),
             ("collectible", "educational", "family", "limited edition", "kids", "creative", "gift")),
    Category("appliances", "家电", 0.04, 1299.0, 0.8,
             ("Midea", "Gree", "Haier", "Dyson", "Ecovacs", "Philips"),
             ("Air Purifier", "Robot Vacuum", "Hair Dryer", "Air Fryer", "Dishwasher", "Humidifier"),
             ("smart", "quiet", "energy saving", "app control", "HEPA", "large capacity", "compact")),
    Category("health", "医药保健", 0.02, 99.0, 0.6,
             ("By-health", "Swisse", "Tongrentang", "Blackmores", "Omron"),
             ("Vitamin C", "Fish Oil", "Blood Pressure Monitor", "Probiotics", "Protein Powder", "Thermometer"),
             ("daily", "immune", "clinically tested", "family", "digital", "natural", "60 tablets")),
)

ADJECTIVES = ("Pro", "Lite", "Max", "Classic", "Plus", "Mini", "Premium", "Air", "Essential", "Ultra", "2026 Edition", "Eco")

#: (city, city_zh, region, weight) — weights roughly follow online shopping population.
CITIES: tuple[tuple[str, str, str, float], ...] = (
    ("Shanghai", "上海", "East", 10.0),
    ("Beijing", "北京", "North", 9.0),
    ("Shenzhen", "深圳", "South", 8.0),
    ("Guangzhou", "广州", "South", 8.0),
    ("Hangzhou", "杭州", "East", 6.0),
    ("Chengdu", "成都", "Southwest", 6.0),
    ("Wuhan", "武汉", "Central", 5.0),
    ("Nanjing", "南京", "East", 5.0),
    ("Chongqing", "重庆", "Southwest", 5.0),
    ("Xi'an", "西安", "Northwest", 4.0),
    ("Suzhou", "苏州", "East", 4.0),
    ("Tianjin", "天津", "North", 4.0),
    ("Changsha", "长沙", "Central", 3.0),
    ("Zhengzhou", "郑州", "Central", 3.0),
    ("Qingdao", "青岛", "East", 3.0),
    ("Xiamen", "厦门", "East", 2.0),
    ("Kunming", "昆明", "Southwest", 2.0),
    ("Shenyang", "沈阳", "Northeast", 2.0),
    ("Harbin", "哈尔滨", "Northeast", 2.0),
    ("Urumqi", "乌鲁木齐", "Northwest", 1.0),
)

DISTRICTS = ("Chaoyang", "Haidian", "Pudong", "Xuhui", "Nanshan", "Futian", "Tianhe", "Xihu", "Wuhou", "Jiangbei", "Gulou", "Binjiang")
ROADS = ("Renmin Rd", "Zhongshan Rd", "Jiefang Rd", "Jianshe Rd", "Heping Rd", "Xinhua Rd", "Changjiang Rd", "Huaihai Rd", "Nanjing Rd", "Keji Rd")

#: (hanzi, pinyin, weight) for the commonest surnames.
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4), ("陈", "chen", 4.5),
    ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.2), ("吴", "wu", 2.0), ("周", "zhou", 1.9),
    ("徐", "xu", 1.3), ("孙", "sun", 1.2), ("马", "ma", 1.2), ("朱", "zhu", 1.1), ("胡", "hu", 1.0),
    ("郭", "guo", 1.0), ("何", "he", 0.9), ("林", "lin", 0.9), ("高", "gao", 0.9), ("罗", "luo", 0.8),
    ("郑", "zheng", 0.8), ("梁", "liang", 0.7), ("谢", "xie", 0.6), ("宋", "song", 0.6), ("唐", "tang", 0.6),
    ("许", "xu", 0.5), ("韩", "han", 0.5), ("冯", "feng", 0.5), ("邓", "deng", 0.5), ("曹", "cao", 0.5),
)

GIVEN: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
    ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
    ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂英", "guiying"), ("浩然", "haoran"), ("子涵", "zihan"), ("欣怡", "xinyi"), ("梓轩", "zixuan"),
    ("雨桐", "yutong"), ("宇轩", "yuxuan"), ("思远", "siyuan"), ("佳怡", "jiayi"), ("一诺", "yinuo"), ("晨", "chen"),
    ("博文", "bowen"), ("婷", "ting"), ("鑫", "xin"), ("雪", "xue"), ("鹏", "peng"), ("慧", "hui"), ("建华", "jianhua"),
    ("俊杰", "junjie"),
)

EN_FIRST = ("James", "Mary", "John", "Linda", "David", "Emma", "Michael", "Olivia", "Daniel", "Sophia", "Kevin", "Grace", "Jason", "Amy", "Eric", "Lucy")
EN_LAST = ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Lee", "Martin", "Clark", "Walker", "Young", "King", "Wright")

EMAIL_DOMAINS: tuple[tuple[str, float], ...] = (
    ("qq.com", 35.0), ("163.com", 20.0), ("126.com", 8.0), ("gmail.com", 10.0), ("outlook.com", 8.0),
    ("sina.com", 5.0), ("foxmail.com", 5.0), ("icloud.com", 6.0), ("yahoo.com", 3.0),
)

#: Mobile number prefixes (operators' segments).
PHONE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "176", "177", "180", "182", "185", "186", "187", "188", "189", "199")

CHANNELS = ("web", "app", "mini_program")
SIGNUP_CHANNELS = ("app", "web", "mini_program", "store")
