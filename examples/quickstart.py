"""The published quick start, on the bundled demo model: runs offline, no download."""

from autodistill.detection import CaptionOntology

from autodistill_metaclip import MetaCLIP, synthetic

synthetic.make_image("red", "circle").save("image.png")  # any photo works; this one is offline

base_model = MetaCLIP(
    ontology=CaptionOntology(
        {
            "a photo of a red circle": "red circle",
            "a photo of a blue square": "blue square",
            "a photo of a green triangle": "green triangle",
        }
    ),
    checkpoint="demo",  # leave out for the real MetaCLIP ("b32-fullcc", downloaded once)
)
results = base_model.predict("image.png", confidence=0.5)
top_result = base_model.ontology.classes()[results.class_id[0]]
print(results, top_result)

m = MetaCLIP(None, checkpoint="demo")
print(m.compare(m.embed_text("a photo of a red circle"), m.embed_image("image.png")))
