"""The per-lesion results of one case as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

One measurement group per row of the results table (lesions and background ROIs), tracked by
the row's name and id: the predicted class as a qualitative evaluation, each class probability
as a numeric measurement (UCUM "1"), the model (HCCAnalysis, its version; task, model version
and weights hash as parameters) as the algorithm. A lesion that is a segment of the case's DICOM
SEG refers to that segment (a volumetric ROI group); other rows are groups without an image
region. The document refers to the source series' instances (its evidence), whose patient
and study it joins. Codes: `dicom_codes` (standard where one exists, else the private 99HCC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from HCCAnalysisLib.io import dicom_codes
from HCCAnalysisLib.io.dicom_source import (MANUFACTURER, SourceSeries, algorithm_parameters, import_highdicom,
                                            software_version)

if TYPE_CHECKING:
    from HCCAnalysisLib.data.prediction import Prediction, PredictionRow

SR_SERIES_NUMBER = 990
# Procedure reported (TID 1500 requires one): the LOINC "unspecified body region" code of the
# source modality, SNOMED CT "Imaging procedure" for any other.
PROCEDURES = {"CT": ("25045-6", "LN", "CT unspecified body region"),
              "MR": ("25056-3", "LN", "MRI unspecified body region")}
IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging procedure")


def _algorithm(hd: Any, card: dict[str, Any]) -> Any:
    parameters = [f"{key}={value}" for key, value in algorithm_parameters(card).items()]
    return hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=software_version(), parameters=parameters)


def _observation_context(hd: Any, card: dict[str, Any]) -> Any:
    """The device observer is the model: its UID is derived from the weights hash (the same model
    gives the same observer UID; no source instance is named by it)."""
    from pydicom.uid import generate_uid

    uid = generate_uid(entropy_srcs=["HCCAnalysis", str(card.get("task", "")), str(card.get("weights_sha256", ""))])
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=uid, name=MANUFACTURER, manufacturer_name=MANUFACTURER,
                                                       model_name=str(card.get("task", ""))[:64])
    observer = hd.sr.ObserverContext(observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
                                     observer_identifying_attributes=device)
    return hd.sr.ObservationContext(observer_device_context=observer)


def _row_content(hd: Any, row: PredictionRow, classes: list[str], algorithm: Any) -> dict[str, Any]:
    unit = dicom_codes.no_unit()
    measurements = [hd.sr.Measurement(name=dicom_codes.probability_code(c), value=float(row.probabilities[c]),
                                      unit=unit, algorithm_id=algorithm) for c in classes]
    evaluation = hd.sr.QualitativeEvaluation(name=dicom_codes.private(*dicom_codes.PREDICTED_CLASS),
                                             value=dicom_codes.class_code(str(row.predicted_class)))
    lesion = row.kind == "lesion"
    finding = (hd.sr.CodedConcept("52988006", "SCT", "Lesion") if lesion
               else dicom_codes.private(*dicom_codes.BACKGROUND_ROI))
    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{row.lesion_name} ({row.lesion_id})"[:64])
    liver = hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept("10200004", "SCT", "Liver"))
    return dict(tracking_identifier=tracking, finding_type=finding, algorithm_id=algorithm, finding_sites=[liver],
                measurements=measurements, qualitative_evaluations=[evaluation])


def _segment_numbers(lesion_seg: Any) -> set[str]:
    return {str(int(item.SegmentNumber)) for item in getattr(lesion_seg, "SegmentSequence", [])}


def _groups(hd: Any, prediction: Prediction, card: dict[str, Any], lesion_seg: Any | None) -> list:
    algorithm = _algorithm(hd, card)
    numbers = _segment_numbers(lesion_seg) if lesion_seg is not None else set()
    groups = []
    for row in prediction.rows:
        content = _row_content(hd, row, list(prediction.classes), algorithm)
        if row.kind == "lesion" and str(row.lesion_id) in numbers:  # the lesion is that SEG segment
            segment = hd.sr.ReferencedSegment.from_segmentation(lesion_seg, int(row.lesion_id))
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment,
                                                                                   **content))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**content))
    return groups


def results_sr(prediction: Prediction, source: SourceSeries, card: dict[str, Any], lesion_seg: Any | None = None
               ) -> Any:
    """The TID 1500 report of `prediction` (one case) as a `highdicom.sr.Comprehensive3DSR`.

    `lesion_seg`: the case's segmentation when it is a DICOM SEG (a highdicom Segmentation) on
    the source series; its lesion segments are then referenced by the lesions' groups."""
    hd = import_highdicom()
    procedure = PROCEDURES.get(source.modality.upper(), IMAGING_PROCEDURE)
    report = hd.sr.MeasurementReport(observation_context=_observation_context(hd, card),
                                     procedure_reported=hd.sr.CodedConcept(*procedure),
                                     imaging_measurements=_groups(hd, prediction, card, lesion_seg))
    # The source instances are referenced as the document's evidence. No Image Library (optional in
    # TID 1500): highdicom builds its entries at ~60 ms per slice, half a minute for a 500-slice CT.
    evidence = list(source.datasets) + ([lesion_seg] if lesion_seg is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=hd.UID(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"HCCAnalysis results ({prediction.task})"[:64])
