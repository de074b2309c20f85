"""Networks: the student generators and the frozen VGG-19 teacher."""

from .student import TAP_NAMES, UPSAMPLE_MODES, StudentNet, count_parameters
from .teacher import TEACHER_TAPS, VGGTeacher, load_teacher

__all__ = ["TAP_NAMES", "TEACHER_TAPS", "UPSAMPLE_MODES", "StudentNet", "VGGTeacher", "count_parameters",
           "load_teacher"]
